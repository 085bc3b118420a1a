# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest system-deps clean package lint-infra deploy

install: $(STAMP)

# The first run takes about a minute: say what is happening and let pip show its progress.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@echo "Creating $(VENV)…"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "Installing dependencies (about a minute the first time)…"
	$(BIN)/pip install --progress-bar on -r requirements-dev.txt
	@echo "Installing chaos-monkey-engine (editable)…"
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)
	@echo "Installed: $(BIN)/chaos-monkey-engine"

run: install
	$(BIN)/chaos-monkey-engine

# System packages the tests use (real sshd, network namespaces, iptables).
system-deps:
	@./scripts/system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo --no-cache
	@# Medium and high findings fail; each exception is a `# nosec BXXX` where it stands.
	$(BIN)/bandit -c pyproject.toml -r . -ll --quiet

typecheck: install
	$(BIN)/mypy app.py chalicelib chaosmonkey attacks planners tests

pytest: install
	$(BIN)/pytest

# pytest last, so that its summary closes the output.
test: system-deps install lint typecheck lint-infra pytest

# The deployed path (docs/deploy.md): one CloudFormation stack per stage. The webhook
# URL reaches the command through the environment, so make never prints its token.
STAGE ?= dev
REGION ?= $(or $(AWS_REGION),$(AWS_DEFAULT_REGION),eu-west-1)
STACK ?= chaos-monkey-engine-$(STAGE)
OUT := out/$(STAGE)

# The Chalice app merged with infra/, in out/<stage>/: sam.json and deployment.zip,
# slimmed of test suites and unused botocore models (docs/benchmarks.md).
package: install
	rm -rf $(OUT)
	$(BIN)/python infra/merge.py $(STAGE) $(OUT)/merge.json
	AWS_DEFAULT_REGION=$(REGION) $(BIN)/chalice package --stage $(STAGE) \
		--merge-template $(OUT)/merge.json $(OUT)
	$(BIN)/python infra/slim_package.py $(OUT)/deployment.zip

lint-infra: package
	$(BIN)/cfn-lint infra/resources.yaml $(OUT)/sam.json

deploy: lint-infra
	@test -n "$(BUCKET)" || { echo "make deploy: error: set BUCKET=<S3 bucket for the code>" >&2; exit 2; }
	aws cloudformation package --region $(REGION) --template-file $(OUT)/sam.json \
		--s3-bucket $(BUCKET) --s3-prefix $(STACK) --output-template-file $(OUT)/packaged.yaml
	aws cloudformation deploy --region $(REGION) --template-file $(OUT)/packaged.yaml \
		--stack-name $(STACK) --parameter-overrides Stage=$(STAGE) $(if $(ALARM_EMAIL),AlarmEmail=$(ALARM_EMAIL)) \
		$(if $(NOTIFY_SNS_TOPIC_ARN),NotifySnsTopicArn=$(NOTIFY_SNS_TOPIC_ARN)) \
		$(if $(NOTIFY_WEBHOOK_URL),"NotifyWebhookUrl=$$NOTIFY_WEBHOOK_URL") \
		--capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND
	aws cloudformation describe-stacks --region $(REGION) --stack-name $(STACK) \
		--query "Stacks[0].Outputs" --output table

# Local mode under the 2017 engine's workload, every store; prints a Markdown table
# (bench/local_scale.py --help for smaller runs).
.PHONY: bench
bench: install
	$(BIN)/python bench/local_scale.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
