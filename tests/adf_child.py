"""Run one DAG with ``dag.test()`` in a fresh interpreter, for the deferrable ADF tests.

The provider's trigger talks to Azure through aiohttp, and aiohttp builds its TLS trust store once,
when it is first imported (``aiohttp.connector``), from ``SSL_CERT_FILE`` as it is then. A test
process may have imported it before the fake factory's test CA existed, so the deferred runs go to
a new interpreter started with the fake's environment, as a triggerer is its own process.

``python adf_child.py DAG_FILE DAG_ID LOGICAL_DATE`` prints ``RESULT {"state", "run_id", "tasks"}``.
The environment (Airflow home, connections, proxy, CA bundle) is the caller's.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

from dag_serialization import serialize


def main(dag_file: str, dag_id: str, logical_date: str) -> None:
    assert "aiohttp" not in sys.modules
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dag_file)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    serialize(dag)
    run = dag.test(logical_date=dt.datetime.fromisoformat(logical_date))
    tasks = {
        (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
        for ti in run.get_task_instances()
    }
    deferrable = {t.task_id: getattr(t, "deferrable", None) for t in dag.tasks}
    print(
        "RESULT "
        + json.dumps(
            {"state": str(run.state), "run_id": run.run_id, "tasks": tasks, "deferrable": deferrable}
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
