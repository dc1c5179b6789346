"""C2SP tlog-policy (https://c2sp.org/tlog-policy): which logs and witnesses, and the quorum.

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> all|any|<k> <member>...
    quorum <name>            (or `quorum none`)

Parsed strictly, as the spec says: whitespace is ASCII space and tab only; `#` comment and
blank lines are ignored; a group or the quorum may name only what preceding lines defined
(no cycles); a name is defined once and listed in groups at most once per group; 1 <= k <= n;
no two logs or witnesses wrap the same public key; exactly one quorum line; control
characters other than tab and newline are refused. Every error names its line. Pure: the
caller reads the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .cosignature import CosignerVerifierKey
from .errors import FormatError
from .note import VerifierKey

NONE = "none"
MAX_ENTRIES = 32 * 3  # the spec recommends supporting at least 32 logs, witnesses and groups


@dataclass(frozen=True)
class PolicyLog:
    key: VerifierKey
    url: str | None


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    key: CosignerVerifierKey
    url: str | None


@dataclass(frozen=True)
class PolicyGroup:
    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    logs: tuple[PolicyLog, ...]
    witnesses: tuple[PolicyWitness, ...]
    groups: tuple[PolicyGroup, ...]
    quorum: str  # a witness name, a group name, or "none"

    @classmethod
    def parse(cls, text: str) -> Policy:
        bad = re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
        if bad:
            at = text.count("\n", 0, bad.start()) + 1
            raise FormatError(f"policy line {at}: control character {bad.group()!r} is not allowed")
        logs: list[PolicyLog] = []
        witnesses: list[PolicyWitness] = []
        groups: list[PolicyGroup] = []
        quorum: str | None = None
        names: set[str] = set()
        keys: set[bytes] = set()
        for number, line in enumerate(text.split("\n"), 1):
            fields = re.split(r"[ \t]+", line.strip(" \t"))
            if fields == [""] or fields[0].startswith("#"):
                continue
            where = f"policy line {number}"
            keyword, args = fields[0], fields[1:]
            try:
                if keyword == "log":
                    _arity(args, 1, 2)
                    log_key = VerifierKey.parse(args[0])
                    _unique_key(keys, log_key.public_key, "log")
                    logs.append(PolicyLog(log_key, _url(args)))
                elif keyword == "witness":
                    _arity(args, 2, 3)
                    _new_name(names, args[0])
                    witness_key = CosignerVerifierKey.parse(args[1])
                    _unique_key(keys, witness_key.public_key, "witness")
                    witnesses.append(PolicyWitness(args[0], witness_key, args[2] if len(args) == 3 else None))
                elif keyword == "group":
                    if len(args) < 3:
                        raise FormatError("a group needs a name, a threshold and at least one member")
                    groups.append(_group(names, args[0], args[1], args[2:]))
                elif keyword == "quorum":
                    _arity(args, 1, 1)
                    if quorum is not None:
                        raise FormatError("a policy has exactly one quorum line")
                    if args[0] != NONE and args[0] not in names:
                        raise FormatError(f"quorum {args[0]!r} is not a witness or group defined above")
                    quorum = args[0]
                else:
                    raise FormatError(f"unknown keyword {keyword!r} (want log, witness, group or quorum)")
            except FormatError as exc:
                raise FormatError(f"{where}: {exc}") from None
            if len(logs) + len(witnesses) + len(groups) > MAX_ENTRIES:
                raise FormatError(f"{where}: more than {MAX_ENTRIES} logs, witnesses and groups")
        if quorum is None:
            raise FormatError("policy has no quorum line (write `quorum none` to require no cosignature)")
        return cls(tuple(logs), tuple(witnesses), tuple(groups), quorum)

    def witness_keys(self) -> tuple[CosignerVerifierKey, ...]:
        return tuple(w.key for w in self.witnesses)

    def log_keys(self) -> tuple[VerifierKey, ...]:
        return tuple(log.key for log in self.logs)

    def quorum_met(self, cosigners: Iterable[str]) -> bool:
        """Whether witnesses named `cosigners` (those with a valid cosignature) meet the quorum."""
        return quorum_met(self, frozenset(cosigners))

    def describe_quorum(self) -> str:
        if self.quorum == NONE:
            return "none"
        group = next((g for g in self.groups if g.name == self.quorum), None)
        if group is None:
            return f"witness {self.quorum}"
        return f"{group.threshold} of {', '.join(group.members)}"


def quorum_met(policy: Policy, cosigners: frozenset[str]) -> bool:
    """tlog-policy: a witness witnesses a checkpoint by cosigning it; a group does when at
    least k of its members do. Groups refer only to earlier names, so one pass in file order
    decides every group."""
    if policy.quorum == NONE:
        return True
    witnessed = {w.name for w in policy.witnesses if w.name in cosigners}
    for group in policy.groups:
        if sum(member in witnessed for member in group.members) >= group.threshold:
            witnessed.add(group.name)
    return policy.quorum in witnessed


def _arity(args: list[str], least: int, most: int) -> None:
    if not least <= len(args) <= most:
        want = str(least) if least == most else f"{least} to {most}"
        raise FormatError(f"want {want} fields after the keyword, got {len(args)}")


def _url(args: list[str]) -> str | None:
    return args[1] if len(args) == 2 else None


def _new_name(names: set[str], name: str) -> None:
    if name == NONE:
        raise FormatError("'none' is predefined and cannot be a witness or group name")
    if name in names:
        raise FormatError(f"name {name!r} is already defined")
    names.add(name)


def _unique_key(keys: set[bytes], public_key: bytes, what: str) -> None:
    if public_key in keys:
        raise FormatError(f"duplicate {what}: its public key is already listed")
    keys.add(public_key)


def _group(names: set[str], name: str, threshold: str, members: list[str]) -> PolicyGroup:
    for member in members:
        if member == NONE:
            raise FormatError("'none' cannot be a group member")
        if member not in names:
            raise FormatError(f"group member {member!r} is not a witness or group defined above")
    if len(set(members)) != len(members):
        raise FormatError(f"group {name!r} lists a member twice")
    if threshold == "all":
        k = len(members)
    elif threshold == "any":
        k = 1
    elif re.fullmatch(r"[1-9][0-9]*", threshold):
        k = int(threshold)
        if k > len(members):
            raise FormatError(f"group {name!r} threshold {k} exceeds its {len(members)} members")
    else:
        raise FormatError(f"group threshold {threshold!r} is not all, any or a decimal number >= 1")
    _new_name(names, name)
    return PolicyGroup(name, k, tuple(members))
