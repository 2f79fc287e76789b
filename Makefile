# promptramp: `make run` runs the service, `make test` runs the tests (see README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The pure cores and the services are type-checked strictly.
STRICT_MODULES := core/json_values.py registry/templating.py registry/content.py serving/bucketing.py registry/diff.py \
	rollouts/engine.py rollouts/plan.py rollouts/gate_metrics.py rollouts/stats.py rollouts/promql.py outcomes/validation.py \
	outcomes/aggregation.py rollouts/figures.py rollouts/charts.py \
	registry/services.py registry/selectors.py registry/validation.py serving/state.py serving/answers.py serving/snapshot_changes.py \
	serving/services.py serving/selectors.py serving/attributes.py \
	registry/git \
	registry/approvals.py rollouts/services.py rollouts/checks.py rollouts/check_rules.py rollouts/transitions.py rollouts/controller.py rollouts/selectors.py rollouts/webhooks.py rollouts/as_json.py rollouts/sources \
	outcomes/services.py outcomes/selectors.py outcomes/pending.py outcomes/ingest_source.py outcomes/exposures.py \
	rollouts/exposures.py serving/exposures.py \
	access/services.py access/selectors.py audit/services.py audit/selectors.py \
	core/state_cache.py core/freshness.py core/redis_client.py core/errors.py core/actors.py core/metrics.py \
	core/operations.py core/cluster_metrics.py rollouts/metrics.py outcomes/metrics.py core/outbound.py core/secret_files.py devstack/embedded_services.py devstack/cluster.py \
	core/prompt_limits.py core/rate_limits.py core/client_address.py core/events.py registry/langfuse_mirror.py \
	core/log_lines.py core/flush_thread.py core/trace_context.py core/request_log.py core/task_log.py core/tracing.py \
	access/announcements.py access/throttling.py \
	sdk/promptramp

.PHONY: run cluster test lint typecheck stop venv browser prometheus alerts nginx

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) -m devstack.stack run

# Two web servers, the stream process, two workers and beat behind nginx on PORT (docs/deploy.md, "A cluster on one machine").
cluster: venv nginx
	$(PY) -m devstack.cluster

# The cluster's load balancer, and its test's, is Debian's nginx.
nginx:
	test -x /usr/sbin/nginx || (apt-get update && apt-get install -y nginx)

# The admin's browser tests drive Debian's Chromium (Playwright cannot download its own here).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# promtool checks the alert rules; the dashboard's test runs a real Prometheus (Debian's package).
prometheus:
	command -v promtool >/dev/null && command -v prometheus >/dev/null || (apt-get update && apt-get install -y prometheus)

alerts: prometheus
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts.test.yml

test: venv browser prometheus nginx
	$(PY) -m devstack.stack test $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=sdk $(VENV)/bin/lint-imports --no-cache

stop: venv
	$(PY) -m devstack.stack services down

typecheck: venv
	SECRET_KEY=typecheck DATABASE_URL=postgresql://typecheck/db REDIS_URL=redis://typecheck/0 \
		$(VENV)/bin/mypy --strict $(STRICT_MODULES)
