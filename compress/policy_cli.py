"""``python -m compress policy set|show|promote|clear MODEL --repo REPO``: the rollout policy of one model.

Writes are validated (schema, published versions) and atomic, then announced on the Redis notice channel so
serving replicas reload at once (otherwise at their next rescan)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.rollout.policy import (
    PolicyError,
    dump,
    policy_path,
    promote_change,
    read_policy,
    set_change,
    update_policy,
)
from compress.errors import CompressError
from compress.notify import notify_published


class PolicyCommandError(CompressError):
    """A refused policy change (exit 2, one line)."""


def _limits(args: argparse.Namespace) -> dict[str, float | int]:
    names = ("min_agreement", "max_error_rate", "max_p99_ratio", "min_requests")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _policy(args: argparse.Namespace) -> int:
    repo, model = Path(args.repo), args.model
    try:
        if args.action == "show":
            policy = read_policy(repo, model)
            sys.stdout.write(dump(policy).decode() if policy else f"{model} has no rollout policy\n")
            return 0
        if args.action == "set":
            change = set_change(
                args.stable, args.canary, args.weight, args.sticky, args.shadow, args.shadow_rate, _limits(args)
            )
            policy = update_policy(repo, model, change)
        elif args.action == "promote":
            policy = update_policy(repo, model, promote_change)
        else:
            policy = update_policy(repo, model, lambda _: None)
    except PolicyError as e:
        raise PolicyCommandError(f"{e.reason}: {e}") from None
    notify_published(model, policy.stable if policy else 0)
    if policy is None:
        print(f"removed {policy_path(repo, model)}: {model} serves its newest ready version")
    else:
        sys.stdout.write(dump(policy).decode())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("policy", help="rollout policy of a model: set | show | promote | clear")
    p.add_argument("action", choices=["set", "show", "promote", "clear"])
    p.add_argument("model")
    p.add_argument("--repo", required=True, help="model repository root")
    p.add_argument("--stable", type=int, help="the version that answers by default")
    p.add_argument("--canary", type=int, help="a version answering a --weight share of requests")
    p.add_argument("--weight", type=float, help="the canary's share of requests, 0-1")
    p.add_argument("--sticky", help="request field (user_id) or header:<name> keeping a customer on one version")
    p.add_argument("--shadow", type=int, help="a version scoring a copy of live requests, never answering")
    p.add_argument("--shadow-rate", type=float, help="share of live requests copied to the shadow (default 0.1)")
    p.add_argument("--min-agreement", type=float, help="roll the canary back below this agreement with stable")
    p.add_argument("--max-error-rate", type=float, help="roll the canary back above this 5xx share")
    p.add_argument("--max-p99-ratio", type=float, help="roll the canary back above this p99 ratio to stable")
    p.add_argument("--min-requests", type=int, help="canary requests before the limits are judged")
    p.set_defaults(fn=_policy)
