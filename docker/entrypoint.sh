#!/bin/sh
# The image's entry point. With no arguments, or with options only, it serves with
# gunicorn (docker run compere; docker run compere -w 4). A Compere command runs the CLI
# (docker run compere migrate). Any other command runs as given
# (docker run compere python -m compere migrate; docker run -it compere sh).
set -eu

case "${1:-}" in
  "" | -*)
    exec gunicorn -c gunicorn.conf.py "$@"
    ;;
  migrate | import | export | createsuperuser | rebuild-ratings)
    exec compere "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
