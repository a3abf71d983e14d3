# Image of the WVA console: one image for the web server, the Celery worker
# and Celery beat. The default command serves the web pages with gunicorn;
# the worker and beat override it:
#
#   docker run IMAGE                                           # web on :8000
#   docker run IMAGE celery --app wva_web worker --loglevel INFO
#   docker run IMAGE celery --app wva_web beat --loglevel INFO
#
# Configuration comes from the environment (see the README), at least
# DATABASE_URL, REDIS_URL and WVA_SECRET_KEY for a shared deployment.
#
# NOTE: CI does not build this image: the CI machine reaches PyPI, Debian
# and npm but no container registry, so the python base image cannot be
# pulled there. tests/integrations/test_gunicorn_serves.py runs the CMD
# below from the virtualenv and checks that every COPY source exists.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 wva \
    && useradd --system --uid 10001 --gid wva --home-dir /app --no-create-home wva

WORKDIR /app

# The pinned runtime requirements first, so a code change reuses this layer.
COPY requirements.txt ./
RUN pip install --requirement requirements.txt

COPY manage.py ./
COPY wva_web/ wva_web/
COPY optimizer/ optimizer/
COPY fleetsim/ fleetsim/
COPY templates/ templates/
COPY static/ static/
COPY data/ data/

# Collect static files into var/staticfiles, where WhiteNoise serves them.
# The settings create var/ on import; the app user owns it.
RUN python manage.py collectstatic --noinput --verbosity 0 \
    && chown -R wva:wva var

USER 10001:10001
EXPOSE 8000

# Two sync workers; /dev/shm keeps the heartbeat file off the image's file
# system, and no control socket is opened, so a read-only root works.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--worker-tmp-dir", "/dev/shm", "--no-control-socket", "--access-logfile", "-", "wva_web.wsgi:application"]
