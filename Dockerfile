FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY actors ./actors
COPY bus ./bus
COPY configs ./configs
COPY execution ./execution
COPY feeds ./feeds
COPY riskguard ./riskguard
COPY signals ./signals
RUN pip install --no-cache-dir -e .
ENV XMC_RUN_DIR=/run/xmc
