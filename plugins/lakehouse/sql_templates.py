"""Jinja2 SQL templates from ``include/<pipeline>/sql/``, rendered with names from the metadata.

Rendered on the Airflow side, so a Spark job (on a laptop or on Databricks) gets plain SQL and
needs no access to ``include/``. Only validated metadata names reach a template.
"""

from __future__ import annotations

import copy

from lakehouse import settings


def template_context(meta: dict) -> dict:
    """What a template may use: the fact table, each dimension's gold table and join key."""
    by_table = {spec["table"]: spec for spec in meta["tables"]}
    fact = by_table[meta["fact"]["table"]]["gold"]["table"]
    dims, keys = {}, {}
    for dim in meta["fact"]["dimensions"]:
        gold = by_table[dim["table"]]["gold"]
        dims[dim["table"]] = gold["table"]
        keys[dim["table"]] = gold.get("surrogate_key") or dim["column"]
    return {"pipeline": meta["pipeline"], "fact": fact, "dims": dims, "keys": keys}


def render(meta: dict, template: str) -> str:
    import jinja2

    folder = settings.include_dir() / meta["pipeline"] / "sql"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined, autoescape=False
    )
    return env.get_template(template).render(**template_context(meta)).strip()


def with_rendered_views(meta: dict) -> dict:
    """A copy of the metadata whose ``views`` carry their rendered ``sql``."""
    config = copy.deepcopy(meta)
    for view in config.get("views", []):
        view["sql"] = render(meta, view["template"])
    return config
