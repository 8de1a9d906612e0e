"""Duplicate archives the harder MPI holds (issue 23): the comparison levels of real typing errors, and
the guards that keep look-alikes apart — small crafted pairs, judged as if the model were certain of
them (the guards' word is what decides these; the 200k figures are in benchmarks/RESULTS.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from stdnum.cn import ric

from healthqa.dedup import compare, engine, normalise
from healthqa.dedup import spec as specs

SPEC = specs.builtin()
ADDRESS = "浙江省宁波市镇海区骆驼街道盛家村骆兴路25号3幢502室"


def id_number(first17: str, check: str | None = None) -> str:
    """A GB 11643 number: valid, or with the check character given (a defect leaves it invalid)."""
    return first17 + (check if check is not None else ric.calc_check_digit(first17 + "0"))


def judged(records: list[dict]) -> tuple[list[str], list[str]]:
    """The first record against the second: its levels by label, and the decision the spec makes of
    them at a score of 1 (the model certain: what is left is the guards')."""
    df = pd.DataFrame(records).assign(archive_id=lambda d: [f"a{k}" for k in range(len(d))])
    P = normalise.prepare(df, SPEC)
    lv = compare.levels(P, SPEC, np.array([0]), np.array([1]))
    labels = [compare.level_name(f, int(v)) for f, v in zip(SPEC.fields, lv[0])]
    return labels, engine.decide(SPEC, np.array([1.0]), lv).tolist()


def person(**kw) -> dict:
    base = {"name": "陈建林", "id_number": None, "birth_date": "1990-03-14", "sex_code": "1",
            "phone": "13812345678", "address": ADDRESS}
    return {**base, **kw}


def test_twins_whose_numbers_a_defect_left_one_digit_apart_are_not_a_match():
    """Twins' order codes differ by two; a defect in one check character leaves the two numbers one
    typing error apart. Their names share a character (陈建林 / 陈建国: "similar characters", not
    "different"), which the guard used to let through."""
    first = id_number("33021119900314123")
    twin = "33021119900314125" + first[-1]  # the elder's check character typed on the younger's number
    labels, decision = judged([person(id_number=first), person(name="陈建国", id_number=twin)])
    assert labels[:2] == ["one edit apart", "similar characters"]
    assert decision == ["review"]


def test_strangers_with_consecutive_numbers_and_no_name_are_not_a_match():
    """Two people born the same day in one area, of one sex, numbered one after the other; one number
    invalid by a defect, one name missing: nothing confirms the near-equal number."""
    a = id_number("33021119900314123")
    b = "33021119900314124" + a[-1]
    labels, decision = judged([person(name=None, id_number=a, phone="13900000001"),
                               person(name="吴心", id_number=b, phone="13700000002",
                                      address="骆驼街道盛家村骆兴路27号")])
    assert labels[0] == "one edit apart" and labels[1] == "missing"
    assert decision == ["review"]


def test_a_number_mistyped_in_its_birth_date_digits_keeps_the_archive_without_a_name():
    """A difference in the area or birth-date digits is no neighbour in the register's numbering
    (those share both): a typing error, the person even with the name missing."""
    a = id_number("33021119650315100")
    b = "33021119650915100" + a[-1]
    labels, decision = judged([person(name=None, id_number=a), person(name="黄秀莹", id_number=b)])
    assert labels[0] == "one typing error in the area or birth date"
    assert decision == ["match"]


def test_a_pair_without_an_id_number_and_a_birthday_one_day_off_is_a_match():
    """One archive made without the ID card, the birthday typed a day off: the name and a birth date
    one keystroke away are identity evidence beside the shared phone and address."""
    labels, decision = judged([person(id_number=id_number("33021119900314123")), person(birth_date="1990-03-13")])
    assert labels[2] == "day one off or its digits reversed"
    assert decision == ["match"]
    labels, decision = judged([person(birth_date="1990-03-12"), person(birth_date="1990-03-21")])
    assert labels[2] == "day one off or its digits reversed"  # the day's two digits the wrong way round


def test_a_given_name_character_dropped_a_phone_digit_and_a_flat_written_otherwise():
    labels, _ = judged([person(name="王晓明"), person(name="王明")])
    assert labels[1] == "a given-name character dropped"
    labels, _ = judged([person(name="王晓明"), person(name="王晓东")])
    assert labels[1] == "similar characters"  # siblings share a character, each has two
    labels, _ = judged([person(), person(phone="13812345687")])
    assert labels[4] == "one digit apart"  # two digits the wrong way round
    labels, _ = judged([person(), person(phone="13812345679")])
    assert labels[4] == "one digit apart"
    labels, _ = judged([person(), person(phone="13812346587")])
    assert labels[4] == "different"
    labels, _ = judged([person(), person(address="骆驼街道盛家村骆兴路25号3-502")])
    assert labels[5] == "equal"  # 3幢502室 written the short way
    labels, _ = judged([person(), person(address="骆驼街道盛家村骆兴路25号")])
    assert labels[5] == "same house, flat left out"


def test_a_given_name_character_dropped_is_the_person_only_with_the_very_birth_date_and_sex():
    """王晓明 registered again as 王明, without the ID card, at the same address and phone: the person
    when birth date and sex agree; with only the month agreeing the household is no proof (review or
    no match, never a match). Twins with similar names stay apart either way."""
    with_id = person(name="王晓明", id_number=id_number("33021119900314123"))
    assert judged([with_id, person(name="王明")])[1] == ["match"]
    assert judged([with_id, person(name="王明", birth_date="1990-03-02")])[1] != ["match"]
    assert judged([with_id, person(name="王晓东")])[1] == ["review"]  # twins: similar names, one day


def test_twins_one_named_with_a_character_more_and_numbers_apart_are_not_a_match():
    """Twins born the same day, both boys, in one household, named 黄建 / 黄建民 ("a given-name character
    dropped"); a defect left one number invalid and more than one typing error from the other's. The
    dropped character is the person only when no ID number says otherwise (a false merge at 1M)."""
    first = id_number("33021119900314123")
    twin = "33021119900314155" + ("0" if first[-1] != "0" else "1")
    labels, decision = judged([person(name="黄建", id_number=first), person(name="黄建民", id_number=twin)])
    assert labels[:4] == ["different", "a given-name character dropped", "equal", "equal"]
    assert decision != ["match"]
    # the same two names without a number on one side: a dropped character, the very birth date and sex
    labels, decision = judged([person(name="黄建民", id_number=first), person(name="黄建", id_number=None)])
    assert labels[0] == "missing" and decision == ["match"]


def test_the_birth_date_a_valid_number_carries_stands_beside_the_date_typed_at_the_counter():
    """GB 11643: digits 7-14 of a number are the birth date the household register holds. An archive
    whose date field was typed wrong (a placeholder 1900-01-01, a year mistyped, a lunar birthday)
    still carries the right date in its valid number; an archive of the same person made without the
    ID card agrees with that date, and the shared phone and address no longer stand alone."""
    with_id = person(id_number=id_number("33021119900314123"), birth_date="1900-01-01")
    labels, decision = judged([with_id, person(birth_date="1990-03-14")])
    assert labels[2] == "equal" and decision == ["match"]
    # the carried date is compared as a typed one is: a day off against it is a day off
    labels, _ = judged([with_id, person(birth_date="1990-03-15")])
    assert labels[2] == "day one off or its digits reversed"
    # an invalid number carries nothing (a typing error may sit in its date digits)
    bad = person(id_number="33021119900314123" + ("0" if with_id["id_number"][-1] != "0" else "1"),
                 birth_date="1900-01-01")
    labels, decision = judged([bad, person(birth_date="1990-03-14")])
    assert labels[2] == "different" and decision != ["match"]
    # twins: each number carries the one birth date both share; their different names keep them apart
    twin = person(name="陈建国", id_number=None, birth_date="1990-03-14")
    assert judged([with_id, twin])[1] != ["match"]


def test_carried_by_names_an_id_number_field_of_the_spec():
    import pytest
    from pydantic import ValidationError

    raw = SPEC.model_dump(by_alias=True)
    for f in raw["fields"]:
        if f["name"] == "birth_date":
            f["carried_by"] = "phone"
    with pytest.raises(ValidationError, match="carried_by"):
        specs.Spec.model_validate(raw)


def test_a_house_or_flat_number_typed_one_key_wrong_is_its_own_address_level():
    """Addresses are typed anew at each registration: a digit of the house or flat number typed
    wrong (骆兴路25号 / 骆兴路28号) or two digits the wrong way round (502室 / 520室) is one character
    apart — a level of its own, whose weight the model learns apart from merely similar addresses
    (another house on the road, another flat in the building)."""
    for other in ("浙江省宁波市镇海区骆驼街道盛家村骆兴路28号3幢502室", "骆驼街道盛家村骆兴路25号3幢520室",
                  "骆驼街道盛家村骆兴路125号3幢502室"):
        labels, _ = judged([person(), person(address=other)])
        assert labels[5] == "one character apart", other
    labels, _ = judged([person(), person(address="骆驼街道盛家村骆兴路36号3幢102室")])
    assert labels[5] == "similar"
    # the level is evidence about the address, not about the person: a household guard still needs
    # the person's own evidence (twins' names differ: not a match at a score of 1)
    labels, decision = judged([person(), person(name="陈建国", address="骆驼街道盛家村骆兴路28号3幢502室")])
    assert decision != ["match"]


def test_a_homophone_and_the_given_name_in_another_order_is_a_level_short_of_either_slip():
    """高慧英 registered again as 高瑛慧: 瑛 for 英 (the same sound) and the given name's order written
    otherwise. Two slips, a level below each alone; the person's evidence only with the very birth
    date and sex and no ID number to say otherwise (as a dropped character: twins have the date)."""
    labels, decision = judged([person(name="高慧英"), person(name="高瑛慧")])
    assert labels[1] == "same pinyin in another order" and decision == ["match"]
    assert judged([person(name="高慧英"), person(name="高瑛慧", birth_date="1990-03-02")])[1] != ["match"]
    labels, _ = judged([person(name="高慧英"), person(name="高英慧")])
    assert labels[1] == "given-name characters swapped"
    labels, _ = judged([person(name="高慧英"), person(name="高慧莹")])
    assert labels[1] == "same pinyin"
    labels, _ = judged([person(name="高慧英"), person(name="高英华")])  # hua is not hui
    assert labels[1] != "same pinyin in another order"


def test_a_household_pair_with_names_alike_but_no_date_to_prove_it_goes_to_the_steward():
    """王晓明 and 王明 at one address and phone, one birth date the year alone (1990-01-01, imputed): no
    match (twins may be named so), but the names are alike — the steward decides, as for similar
    characters; names that differ stay a non-match (a parent and a child)."""
    with_id = person(name="王晓明", id_number=id_number("33021119900314123"))
    assert judged([with_id, person(name="王明", birth_date="1990-01-01")])[1] == ["review"]
    assert judged([with_id, person(name="陈晓明", birth_date="1990-01-01")])[1] == ["non_match"]
    # the very name, the birth date typed wholly wrong on the archive without the number
    assert judged([with_id, person(name="王晓明", birth_date="1962-05-20")])[1] == ["review"]


def test_a_legacy_number_carries_no_birth_date():
    """A 15-digit number's check character is computed when it is widened: nothing vouches for its date
    digits (a transposition there reads as another valid date), so its date stands for no typed one."""
    legacy = "330211" + "900314" + "123"  # 1990-03-14
    labels, _ = judged([person(id_number=legacy, birth_date="1900-01-01"), person(birth_date="1990-03-14")])
    assert labels[2] == "different"


def test_every_built_in_level_has_its_chinese_words_on_the_review_page():
    """A new level (one character apart, the same pinyin in another order) is shown to the steward in
    Chinese, as every other level is (console/review_words.yml)."""
    import yaml

    from healthqa.console import evidence

    words = yaml.safe_load(evidence.WORDS.read_text("utf-8"))["levels"]
    missing = [label for k in compare.BUILTIN for label in k.levels if label not in words]
    assert missing == []


def test_a_guardians_id_number_on_a_childs_archive_is_not_the_child():
    """A mother's 身份证 (born 1988-05-02) entered on her newborn's archive (王子涵, born 2020-11-03): the
    number is equal, and the date it carries used to stand for the child's recorded one — "equal" —
    so the mother's archive and the child's were merged. An archive born years after its own number's
    date carries someone else's number: the steward decides. The same number with the person's name
    (a birth date typed wrong on one archive) stays a match."""
    n = id_number("33021119880502121")
    mother = person(name="李秀梅", id_number=n, birth_date="1988-05-02", sex_code="2")
    child = person(name="王子涵", id_number=n, birth_date="2020-11-03", sex_code="1")
    for pair in ([mother, child], [child, mother]):
        labels, decision = judged(pair)
        assert labels[:3] == ["equal", "different", "different"] and decision == ["review"]
    # a newborn's temporary name (no name) is no slip of the mother's either
    assert judged([mother, {**child, "name": None}])[1] == ["review"]
    # the mother's own archives: the number and the name agree, one date mistyped (2008 for 1988)
    assert judged([mother, {**mother, "birth_date": "2008-05-02"}])[1] == ["match"]


def test_the_review_page_names_a_guardians_id_number():
    """The pattern the console adds to the guard's words for such a pair."""
    from healthqa.console import evidence

    explanation = {f: {"level": lv} for f, lv in zip(
        [f.name for f in SPEC.fields], ["equal", "different", "different", "different", "equal", "equal"])}
    said = evidence.held(SPEC, 1.0, explanation)
    assert said is not None and "监护人" in said.words
