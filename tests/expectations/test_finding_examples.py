"""What a finding's examples show (issue 22): an unregistered institution's code (an org code is no
personal data), and the other archives of an ID number held by two active archives (archive numbers,
the ID number masked). The crafted MPI of the collaboration tests."""

from __future__ import annotations

from healthqa.reports.findings import example_lines

from .test_collaboration import AS_OF, ID_A, ID_B, PERSON, violating


def test_an_unregistered_institution_example_shows_its_code():
    person = PERSON.assign(org_code=["S1", "S1", "S2", "S1", "X9", "S1"])
    keys, examples = violating("person", "MPI-ORG-REGISTERED", person)
    assert keys == ["PD2"]
    (ex,) = examples
    assert ex["org"] == "X9" and ex["values"]["org_code"] == "X9"
    assert example_lines({"examples": examples}, None) == ["PD2 · org_code=X9"]


def test_two_active_archives_of_one_id_number_name_each_other():
    import pandas as pd

    from healthqa.expectations import suite
    from healthqa.expectations.references import PROVIDERS
    from healthqa.expectations.rule_types import RuleContext
    from healthqa.expectations.runner import validate_frame

    mpi = pd.DataFrame({"archive_id": ["P1", "P2", "P3", "P4"], "id_number": [ID_A, ID_A.lower(), ID_A, ID_B],
                        "id_type_code": ["01"] * 4, "status_code": ["1", "1", "3", "1"], "org_code": ["S1", "S2", "S1", "S1"]})
    rules = [r for r in suite.builtin("person").rules if r.id == "MPI-ID-ONE-ACTIVE"]
    refs = {n: PROVIDERS[n].make({t: mpi[list(c)] for t, c in PROVIDERS[n].reads.items()})
            for n in set().union(*(r.needs | r.linked for r in rules))}
    (res,) = validate_frame(mpi, "person", rules, RuleContext(as_of=AS_OF, references=refs), all_keys=True)
    assert sorted(res.violating_keys) == ["P1", "P2"]  # P3 holds the number too, but is no longer active
    linked = {e["key"]: e["values"]["linked"] for e in res.examples}
    assert linked == {"P1": "mpi.person P2, P3", "P2": "mpi.person P1, P3"}
    assert all(e["values"]["id_number"] != ID_A and "*" in e["values"]["id_number"] for e in res.examples)
