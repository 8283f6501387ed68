#!/bin/sh
# The image's `qsite` command: the code runs from /app (see Dockerfile), not from an installed package.
exec python -m service "$@"
