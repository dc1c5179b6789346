"""`verify --policy`: does a checkpoint the witnesses cosigned vouch for the log in the store?

The log's own signature proves only what its operator says. A checkpoint whose cosignatures
meet the tlog-policy quorum proves more: independent witnesses saw that tree and will never
cosign a tree of the same log that does not extend it. So:

- the newest cosigned checkpoint that meets the quorum (from the anchor directory's
  ``.cosigned`` files, otel_audit/witnessed.py) is the newest checkpoint relied on; none at
  all is an integrity failure (kind ``witness_quorum``);
- it must be the store's own checkpoint of that size, with the same signed body; the store's
  checkpoints are proven against the rows by the log verifier, so the rows up to that size
  are the ones the witnesses saw; otherwise the log was rolled back or rewritten (kind
  ``witnessed``);
- records after it are signed by the log alone, and are reported as not yet witnessed.

`lines` reports which witnesses cosigned which size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from otel_audit.checkpoint import read_unverified
from otel_audit.errors import AuditError, Finding
from otel_audit.note import VerifierKey
from otel_audit.witness_policy import Policy
from otel_audit.witnessed import Witnessed, newest_witnessed, read_cosigned, witnessed

from .store import Store


@dataclass
class WitnessReport:
    quorum: str
    relied_on: Witnessed | None = None
    cosigned_sizes: dict[str, int] = field(default_factory=dict)  # witness -> newest size it cosigned
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"witness quorum: {self.quorum}"]
        if self.relied_on is not None:
            out.append(f"witnessed: {self.relied_on.describe()} (quorum met)")
        for name, size in sorted(self.cosigned_sizes.items()):
            out.append(f"witness {name}: newest cosigned tree size {size}")
        return out + [f"note: {n}" for n in self.notes]

    def as_dict(self) -> dict[str, object]:
        relied = self.relied_on
        return {
            "quorum": self.quorum,
            "witnessed_size": None if relied is None else relied.checkpoint.tree_size,
            "cosigners": {} if relied is None else relied.cosigners,
            "cosigned_sizes": self.cosigned_sizes,
            "findings": [f.as_dict() for f in self.findings],
            "notes": self.notes,
        }


def notes_of(anchor_dir: Path | None, origin: str) -> list[tuple[str, str]]:
    """(source, note text) of the cosigned checkpoints kept beside the anchors."""
    if anchor_dir is None:
        return []
    return [(str(path), text) for path, text in read_cosigned(anchor_dir, origin)]


def check_witnessed(
    store: Store, key: VerifierKey, policy: Policy, notes: list[tuple[str, str]], signed_size: int
) -> WitnessReport:
    report = WitnessReport(policy.describe_quorum())
    for _, text in notes:
        try:
            seen = witnessed(text, policy, (key,))
        except AuditError:
            continue  # reported by newest_witnessed below
        for name in seen.cosigners:
            size = seen.checkpoint.tree_size
            report.cosigned_sizes[name] = max(report.cosigned_sizes.get(name, 0), size)
    best, problems = newest_witnessed(notes, policy, (key,))
    for problem in problems:
        report.findings.append(Finding("witnessed", f"cosigned checkpoint does not verify: {problem}"))
    if best is None:
        report.findings.append(
            Finding(
                "witness_quorum",
                f"no checkpoint of {key.name} carries cosignatures meeting the quorum "
                f"({report.quorum}); newest signed tree size {signed_size} is vouched for by the "
                "log's key alone",
            )
        )
        return report
    report.relied_on = best
    size = best.checkpoint.tree_size
    stored = store.checkpoint_at(key.name, size)
    same = (
        stored is not None and read_unverified(stored.note).note.text == read_unverified(best.text).note.text
    )
    if not same or size > signed_size:
        report.findings.append(
            Finding(
                "witnessed",
                f"the checkpoint at tree size {size} that the witnesses cosigned "
                f"({', '.join(sorted(best.cosigners))}) is not the store's: the log was rolled back "
                "or rewritten after they saw it",
                first_seq=0,
                last_seq=max(0, size - 1),
            )
        )
    elif signed_size > size:
        report.notes.append(f"Seq {size}..{signed_size - 1} are signed by the log but not yet witnessed")
    return report
