# Two stages: build the wheel (with the dashboard and schemas as package data), then install
# it alone into a slim image that runs as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY aggregates aggregates
COPY processor processor
COPY projections projections
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 coterm \
 && mkdir -p /var/lib/coterm/staff && chown coterm:coterm /var/lib/coterm/staff
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER coterm
WORKDIR /home/coterm
# `coterm serve` answers /healthz on 8000; compose gives `coterm run` and the simulator their own.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["coterm", "--help"]
