"""The claim verdict rules on constructed MLflow runs (tests/constructed_runs.py).

Each rule must say ``supported`` on a study built to support its claim, ``contradicted`` on one
built against it and ``inconclusive`` on noise (no effect anywhere); the verdicts must rest on
the runs they should, the precondition must veto a study whose models did not learn, and the
same verdicts must come out when the runs go through a real MLflow store.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from farfield.analysis.claims import evaluate_claims
from farfield.analysis.verdicts import (
    claims_table,
    difference_effect,
    effect_over_units,
    paired_structure_effect,
    ratio_effect,
)

from tests.constructed_runs import CONTRADICTING, NOISE, SUPPORTING, World, study_runs, tables, tables_from_runs


def _verdicts(claim_set) -> list[str]:
    return [claim.verdict for claim in claim_set.claims]


@pytest.fixture(scope="module")
def supported():
    return evaluate_claims(*tables(SUPPORTING, seed=0))


def test_every_rule_is_supported_on_a_study_built_to_support_it(supported):
    assert supported.precondition.met is True
    assert _verdicts(supported) == ["supported"] * 5, [c.reason for c in supported.claims]
    claim1, claim2, claim3, claim4, claim5 = supported.claims
    # the deciding effects are the built-in ones, within their CIs
    w = SUPPORTING
    per_model = [w.split_factor] * 2 + [w.split_factor * w.long_range_biased[s] / w.long_range_random[s]
                                        for s in ("celli(q)", "celli", "les", "efa")]
    expected_ratio = float(np.exp(np.mean(np.log(per_model))))  # geometric mean over the models
    assert claim2.effect.ci_low < expected_ratio < claim2.effect.ci_high and claim2.effect.null == 1.0
    gains = [1 - w.long_range_random["celli(q)"] / w.long_range_random["celli"],
             1 - w.long_range_biased["celli(q)"] / w.long_range_biased["celli"]]
    assert claim3.effect.ci_low < (3 * gains[0] + 9 * gains[1]) / 12 < claim3.effect.ci_high
    assert claim4.effect.ci_low < 0.02 < claim4.effect.ci_high and claim4.effect.null == 0.1
    assert claim1.effect.name.endswith("gain on the biased splits − gain on random")
    assert claim5.effect.value > 0


def test_every_rule_is_contradicted_on_a_study_built_against_it():
    claim_set = evaluate_claims(*tables(CONTRADICTING, seed=0))
    assert _verdicts(claim_set) == ["contradicted"] * 5, [c.reason for c in claim_set.claims]
    assert claim_set.claims[0].effect.value < 0  # long-range raises the OOD error
    assert claim_set.claims[1].effect.value < 1  # biased splits lower it


def test_every_rule_is_inconclusive_on_noise():
    assert _verdicts(evaluate_claims(*tables(NOISE, seed=1))) == ["inconclusive"] * 5
    # and not by luck of one seed: over ten noise studies each rule decides at about its alpha
    decided = Counter()
    for seed in range(10):
        for claim in evaluate_claims(*tables(NOISE, seed=seed)).claims:
            decided[claim.number] += claim.verdict != "inconclusive"
    assert max(decided.values()) <= 2, decided


def test_verdicts_rest_on_the_runs_they_should(supported):
    trials, _, _ = tables(SUPPORTING, seed=0)
    scheme = trials.set_index("run_id")["scheme"]
    layers = trials.set_index("run_id")["layers"]
    runs = {claim.number: set(claim.run_ids) for claim in supported.claims}
    assert {scheme[r] for r in runs[1]} == {"none", "celli", "celli(q)", "les", "efa"}
    assert {layers[r] for r in runs[1]} == {2}  # the 4-layer models are nobody's twin
    assert {scheme[r] for r in runs[3]} == {"celli", "celli(q)", "none"}
    assert {scheme[r] for r in runs[4]} == {"les"} and len(runs[4]) == 12
    assert {scheme[r] for r in runs[5]} == {"none"} and {layers[r] for r in runs[5]} == {2, 4}
    assert len(runs[2]) == len(trials)
    main = supported.claims[2].effect
    assert {scheme[r] for r in main.run_ids} == {"celli", "celli(q)"} and main.n == 12  # 4 splits x 3 seeds


def test_a_study_whose_models_did_not_learn_gets_no_verdict():
    claim_set = evaluate_claims(*tables(SUPPORTING, seed=0, baseline_f=150.0, baseline_e=15.0))
    assert claim_set.precondition.met is False
    assert _verdicts(claim_set) == ["inconclusive"] * 5
    assert all("did not learn" in claim.reason and "would be supported" in claim.reason for claim in claim_set.claims)


def test_models_that_learned_but_not_accurately_keep_their_verdicts_marked_provisional():
    """Between the accuracy bar (20 % of zero-force) and the gate (50 %) the verdicts stand, provisional."""
    from farfield.analysis.render import _precondition_line
    from tests.constructed_runs import BASELINE_E, BASELINE_F

    accurate = evaluate_claims(*tables(SUPPORTING, seed=0))
    fraction = accurate.precondition.fraction
    assert fraction < 0.2 and accurate.precondition.accurate is True
    assert "provisional" not in _precondition_line(accurate)
    loose = evaluate_claims(*tables(SUPPORTING, seed=0, baseline_f=BASELINE_F * fraction / 0.35,
                                    baseline_e=BASELINE_E))
    assert loose.precondition.met is True and loose.precondition.accurate is False
    assert loose.precondition.fraction == pytest.approx(0.35)
    assert _verdicts(loose) == _verdicts(accurate) == ["supported"] * 5
    line = _precondition_line(loose)
    assert "provisional" in line and "20 %" in line and "35 %" in line, line
    assert loose.to_dict()["precondition"]["accurate"] is False


def test_missing_designs_are_inconclusive_and_say_what_is_missing():
    trials, structures, charges = tables(SUPPORTING, seed=0)
    only_random_short = trials[(trials["split"] == "random") & (trials["scheme"] == "none") & (trials["layers"] == 2)]
    claim_set = evaluate_claims(only_random_short, structures, charges.iloc[:0])
    assert _verdicts(claim_set) == ["inconclusive"] * 5
    reasons = [claim.reason for claim in claim_set.claims]
    assert all(reason.startswith("not testable") for reason in reasons), reasons
    assert "twin" in reasons[0] and "random and a biased split" in reasons[1] and "LES" in reasons[3]


def test_long_range_twins_on_one_side_only_say_which_side_is_missing():
    """A study stopped after its random-split twins: claim 1 names the missing biased twins."""
    trials, structures, charges = tables(SUPPORTING, seed=0)
    random_twins = trials[(trials["split"] == "random") & (trials["scheme"].isin(["none", "les"]))
                          & (trials["layers"] == 2)]
    claim = evaluate_claims(random_twins, structures, charges.iloc[:0]).claims[0]
    assert claim.verdict == "inconclusive"
    assert claim.reason == ("not testable: long-range trials have short-range twins only on the random split, "
                            "none on a biased one"), claim.reason


def test_claims_json_has_five_claims_with_verdict_effect_ci_test_p_and_runs(supported):
    data = json.loads(json.dumps(supported.to_dict()))
    assert len(data["claims"]) == 5 and data["precondition"]["met"] is True
    for claim in data["claims"]:
        assert claim["verdict"] in ("supported", "contradicted", "inconclusive")
        assert isinstance(claim["effect"], float) and len(claim["ci95"]) == 2 and claim["ci95"][0] < claim["ci95"][1]
        assert claim["test"] and 0 <= claim["p_value"] < 0.05 and claim["run_ids"] and claim["evidence"]
    table = claims_table(supported)
    assert list(table["claim"]) == [1, 2, 3, 4, 5] and (table["verdict"] == "supported").all()


def test_the_runs_give_the_same_verdicts_through_a_real_mlflow_store(tmp_path, supported):
    import mlflow
    from farfield.analysis.mlflow_queries import find_trial_runs
    from mlflow.tracking import MlflowClient

    runs, structures, charges = study_runs(SUPPORTING, seed=0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("claims", artifact_location=(tmp_path / "artifacts").as_uri())
    new_id = {}
    for run in runs:
        created = client.create_run(experiment, run_name=run.run_name, tags=run.tags)
        client.log_batch(created.info.run_id,
                         metrics=[mlflow.entities.Metric(k, v, 0, 0) for k, v in run.metrics.items()],
                         params=[mlflow.entities.Param(k, v) for k, v in run.params.items()])
        client.set_terminated(created.info.run_id, "FINISHED")
        new_id[run.run_id] = created.info.run_id
    read = find_trial_runs(uri, "claims", "constructed")
    assert len(read) == len(runs)
    structures = structures.assign(run_id=structures["run_id"].map(new_id))
    charges = charges.assign(run_id=charges["run_id"].map(new_id))
    claim_set = evaluate_claims(*tables_from_runs(read, structures, charges))
    assert _verdicts(claim_set) == _verdicts(supported)
    for mine, theirs in zip(claim_set.claims, supported.claims):
        assert mine.effect.value == pytest.approx(theirs.effect.value)
        assert sorted(mine.run_ids) == sorted(new_id[r] for r in theirs.run_ids)


def test_effect_helpers_on_known_answers():
    rng = np.random.default_rng(0)
    effect = effect_over_units("x", "m", rng.normal(0.3, 0.1, 50), "fraction", "units")
    assert effect.ci_low < 0.3 < effect.ci_high and effect.direction() == 1 and effect.n == 50
    assert effect_over_units("x", "m", [0.3], "fraction", "one unit").direction() == 0  # untestable
    ratio = ratio_effect("r", "m", np.exp(rng.normal(np.log(2.0), 0.1, 30)), "units")
    assert ratio.ci_low < 2.0 < ratio.ci_high and ratio.direction() == 1 and ratio.null == 1.0
    below = ratio_effect("r", "m", rng.uniform(0.01, 0.03, 10), "units", null=0.1)
    assert below.direction() == -1
    difference = difference_effect("d", "m", rng.normal(1.0, 0.1, 9), rng.normal(0.5, 0.1, 3), "u", "units")
    assert difference.ci_low < 0.5 < difference.ci_high and difference.direction() == 1 and difference.n == 12
    logs = difference_effect("d", "m", np.log([4.0, 4.2, 3.9]), np.log([2.0, 2.1, 1.95]), "×", "u", log=True)
    assert logs.value == pytest.approx(2.0, rel=0.05) and logs.ci_low < 2.0 < logs.ci_high
    structures = pd.DataFrame({"run_id": ["a"] * 20 + ["b"] * 20, "split_hash": "h",
                               "structure_id": [f"s{i}" for i in range(20)] * 2,
                               "f": np.r_[np.arange(20) + 5.0, np.arange(20.0)]})
    paired = paired_structure_effect(structures, ["a"], ["b"], "f", "a − b", "meV/Å")
    assert paired.value == pytest.approx(5.0) and paired.n == 20 and paired.p_value < 1e-3
    # a Bonferroni factor of 2 turns a p of 0.03 into no decision
    assert effect.__class__("x", "m", 1.0, 0.5, 1.5, "u", 5, "t", 0.03).direction(2) == 0


def test_depth_claim_names_the_effect_that_decided_it():
    """Claim 5 contradicted because the deeper model is better on test while its gap does not
    grow significantly: the claim's effect is that test gain, not the insignificant gap growth."""
    def depth_claim(deep_test: float, deep_train: float):
        return evaluate_claims(*tables(World(deep_test=deep_test, deep_train=deep_train, noise=0.01))).claims[4]

    claim = depth_claim(0.97, 0.94)  # 3 % better on test, train→test gap unchanged
    assert claim.verdict == "contradicted", claim.reason
    assert claim.effect.name.endswith("test-error gain of the deeper model"), claim.effect.name
    assert claim.effect.ci_low > 0 and "without a significantly larger gap" in claim.reason
    # better on test *and* a significantly larger gap: the rule decides nothing
    both = depth_claim(0.97, 0.8)
    assert both.verdict == "inconclusive", both.reason
    # a larger gap and no test gain: supported, decided by the gap growth
    overfit = depth_claim(1.0, 0.5)
    assert overfit.verdict == "supported" and overfit.effect.name.endswith("gap with depth"), overfit.reason
