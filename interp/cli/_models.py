"""``interp models``: the bundled and cached models."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list the bundled and cached models",
                       description="List the bundled models (installed or not) and the models "
                       "in interp's weight cache ($INTERP_CACHE_DIR, default ~/.cache/interp).")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..models import list_models

    rows = list_models()
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{w}}  {r['kind']:<8} {r['status']:<24} {r['where']}")
    return 0
