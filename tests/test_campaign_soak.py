"""The short kill -9 soak (tests/campaign/soak.py): a few kills under load from gRPC and
OTLP/HTTP producers; the long one is `bench/soak.py --kills 50`."""

from __future__ import annotations

import pytest

from tests.campaign.soak import Soak, SoakConfig, SoakReport

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> SoakReport:
    # No timed checkpoint during the run (interval 3600 s): what is signed after a restart is
    # what the restart itself signs.
    config = SoakConfig(kills=3, seed=12, producers=4, checkpoint_interval="3600", workers=1)
    return Soak(tmp_path_factory.mktemp("soak"), config, log=lambda _: None).run()


def test_kill_9_under_load_loses_no_acknowledged_record(soak: SoakReport) -> None:
    assert not soak.failed_start, soak.summary()
    assert soak.kills == 3, soak.summary()
    assert len(soak.acknowledged) > 0 and not soak.refusals, soak.summary()
    assert soak.lost == set(), f"{sorted(soak.lost)[:20]}\n{soak.summary()}"
    assert soak.seq_contiguous and soak.seq_count == sum(soak.stored.values()), soak.summary()
    assert soak.clean_exit == 0 and soak.verify_exit == 0, soak.verify_output


def test_every_restart_signs_what_it_recovered_before_the_next_kill(soak: SoakReport) -> None:
    recovering = [start for start in soak.killed_starts if start.had_unsigned]
    assert recovering, f"no start recovered unsigned records; the soak proves nothing\n{soak.summary()}"
    assert all(start.signed_before_kill for start in recovering), soak.summary()
