import json

import pandas as pd
import pytest

from eval_pipeline.core.ingest import (
    BenchmarkSourceError,
    current_dataset_version,
    ingest_files,
)

GOOD_ROWS = [
    {
        "item_id": "sv-1",
        "region": "SV",
        "text": "¡Qué chivo está tu carro, cipote!",
        "term": "chivo",
        "reference": "bonito",
        "task_type": "define_term",
    },
    {
        "item_id": "pe-1",
        "region": "PE",
        "text": "¿Vamos a tu jato después de la chamba?",
        "term": "jato",
        "reference": "casa",
        "task_type": "define_term",
    },
]


def write_jsonl(path, rows, raw_lines=()):
    lines = [json.dumps(row, ensure_ascii=False).encode() for row in rows]
    path.write_bytes(b"\n".join([*lines, *raw_lines]) + b"\n")
    return path


def test_jsonl_accepts_valid_rows(tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", GOOD_ROWS)
    result = ingest_files("bench", [str(path)])
    assert len(result.accepted) == 2
    assert len(result.quarantined) == 0
    assert result.accepted["text"].tolist()[0] == "¡Qué chivo está tu carro, cipote!"


def test_csv_and_parquet_match_jsonl(tmp_path):
    jsonl = write_jsonl(tmp_path / "items.jsonl", GOOD_ROWS)
    csv_path = tmp_path / "items.csv"
    pd.DataFrame(GOOD_ROWS).to_csv(csv_path, index=False, encoding="utf-8")
    parquet_path = tmp_path / "items.parquet"
    pd.DataFrame(GOOD_ROWS).to_parquet(parquet_path, index=False)
    columns = ["item_id", "region", "text", "term", "reference", "task_type"]
    expected = ingest_files("a", [str(jsonl)]).accepted[columns]
    for path in (csv_path, parquet_path):
        accepted = ingest_files("a", [str(path)]).accepted[columns]
        pd.testing.assert_frame_equal(accepted, expected)


def quarantine_reasons(tmp_path, rows, raw_lines=()):
    path = write_jsonl(tmp_path / "items.jsonl", rows, raw_lines)
    result = ingest_files("bench", [str(path)], allowed_regions=["SV", "PE"])
    return result, dict(
        zip(result.quarantined["row_number"], result.quarantined["reason"], strict=True)
    )


def test_missing_field_quarantined(tmp_path):
    row = {k: v for k, v in GOOD_ROWS[0].items() if k != "reference"}
    result, reasons = quarantine_reasons(tmp_path, [row])
    assert reasons == {1: "missing_field"}
    assert "reference" in result.quarantined["detail"].iloc[0]


def test_empty_text_quarantined(tmp_path):
    _, reasons = quarantine_reasons(tmp_path, [{**GOOD_ROWS[0], "text": "   "}])
    assert reasons == {1: "empty_text"}


def test_duplicate_item_id_quarantined(tmp_path):
    result, reasons = quarantine_reasons(tmp_path, [GOOD_ROWS[0], GOOD_ROWS[0], GOOD_ROWS[1]])
    assert reasons == {2: "duplicate_item_id"}
    assert result.accepted["item_id"].tolist() == ["sv-1", "pe-1"]
    assert "items.jsonl:1" in result.quarantined["detail"].iloc[0]


def test_unknown_region_quarantined(tmp_path):
    result, reasons = quarantine_reasons(tmp_path, [{**GOOD_ROWS[0], "region": "XX"}])
    assert reasons == {1: "unknown_region"}
    assert "'XX'" in result.quarantined["detail"].iloc[0]


def test_invalid_utf8_quarantined_with_raw_bytes(tmp_path):
    bad = '{"item_id": "sv-9", "region": "SV", "text": "ni\xf1o", "term": "x", '
    bad += '"reference": "y", "task_type": "define_term"}'
    result, reasons = quarantine_reasons(tmp_path, GOOD_ROWS, [bad.encode("latin-1")])
    assert reasons == {3: "invalid_utf8"}
    assert "\\xf1" in result.quarantined["raw_record"].iloc[0]
    assert len(result.accepted) == 2


def test_malformed_json_quarantined(tmp_path):
    result, reasons = quarantine_reasons(tmp_path, GOOD_ROWS, [b"{not json"])
    assert reasons == {3: "malformed_record"}
    assert result.quarantined["raw_record"].iloc[0] == "{not json"


def test_valid_row_wins_over_earlier_invalid_duplicate(tmp_path):
    rows = [{**GOOD_ROWS[0], "region": "XX"}, GOOD_ROWS[0]]
    result, reasons = quarantine_reasons(tmp_path, rows)
    assert reasons == {1: "unknown_region"}
    assert result.accepted["item_id"].tolist() == ["sv-1"]


def test_several_reasons_recorded(tmp_path):
    row = {**GOOD_ROWS[0], "region": "ZZ", "text": ""}
    _, reasons = quarantine_reasons(tmp_path, [row])
    assert reasons == {1: "empty_text,unknown_region"}


def test_rows_read_equals_accepted_plus_quarantined(tmp_path):
    rows = [GOOD_ROWS[0], GOOD_ROWS[0], {**GOOD_ROWS[1], "region": "XX"}, GOOD_ROWS[1]]
    # Row 4 is accepted: its item_id was used before only by an invalid row.
    result, _ = quarantine_reasons(tmp_path, rows, [b"[1, 2]"])
    assert result.rows_read == 5
    assert len(result.accepted) == 2
    assert len(result.quarantined) == 3


def test_field_defaults_fill_missing_task_type(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "task_type"} for row in GOOD_ROWS]
    path = write_jsonl(tmp_path / "items.jsonl", rows)
    without = ingest_files("bench", [str(path)])
    with_default = ingest_files("bench", [str(path)], field_defaults={"task_type": "define_term"})
    assert len(without.accepted) == 0
    assert len(with_default.accepted) == 2
    assert set(with_default.accepted["task_type"]) == {"define_term"}


def test_extra_fields_kept(tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", [{**GOOD_ROWS[0], "synonyms": ["lindo"]}])
    extra = json.loads(ingest_files("bench", [str(path)]).accepted["extra"].iloc[0])
    assert extra == {"synonyms": ["lindo"]}


def test_nfd_text_stored_as_nfc(tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", [{**GOOD_ROWS[1], "reference": "cas\u0061\u0301"}])
    assert ingest_files("bench", [str(path)]).accepted["reference"].iloc[0] == "casá"


def test_version_depends_on_content_not_name(tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", GOOD_ROWS)
    copy = write_jsonl(tmp_path / "b.jsonl", GOOD_ROWS)
    changed = write_jsonl(tmp_path / "c.jsonl", GOOD_ROWS[:1])
    assert current_dataset_version([str(first)]) == current_dataset_version([str(copy)])
    assert current_dataset_version([str(first)]) != current_dataset_version([str(changed)])


def test_version_depends_on_allowed_regions(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", GOOD_ROWS)
    assert current_dataset_version([str(path)], ["SV"]) != current_dataset_version([str(path)])


def test_missing_file_error_names_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(BenchmarkSourceError, match=r"nope\.jsonl"):
        ingest_files("bench", [str(missing)])


def test_unsupported_suffix_rejected(tmp_path):
    path = tmp_path / "items.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(BenchmarkSourceError, match=r"\.xlsx"):
        ingest_files("bench", [str(path)])


def test_no_files_configured_rejected():
    with pytest.raises(BenchmarkSourceError, match="EVAL_PIPELINE_DATASET_FILES"):
        ingest_files("bench", [])


def test_csv_with_extra_cells_quarantined(tmp_path):
    path = tmp_path / "items.csv"
    header = "item_id,region,text,term,reference,task_type\n"
    good = "sv-1,SV,¡Qué chivo!,chivo,bonito,define_term\n"
    bad = "sv-2,SV,hola,x,y,define_term,surplus\n"
    path.write_text(header + good + bad, encoding="utf-8")
    result = ingest_files("bench", [str(path)])
    assert len(result.accepted) == 1
    assert result.quarantined["reason"].tolist() == ["malformed_record"]
    assert "surplus" in result.quarantined["raw_record"].iloc[0]


def test_jsonl_bom_and_unicode_line_separator(tmp_path):
    row = {**GOOD_ROWS[0], "text": "uno\u2028dos"}
    path = tmp_path / "items.jsonl"
    path.write_text("\ufeff" + json.dumps(row, ensure_ascii=False) + "\r\n", encoding="utf-8")
    result = ingest_files("bench", [str(path)])
    assert result.rows_read == 1
    assert result.accepted["text"].iloc[0] == "uno\u2028dos"


def test_non_string_text_quarantined(tmp_path):
    _, reasons = quarantine_reasons(tmp_path, [{**GOOD_ROWS[0], "text": 123}])
    assert reasons == {1: "invalid_type"}


def test_lone_surrogate_quarantined(tmp_path):
    raw = json.dumps({**GOOD_ROWS[0], "text": "placeholder"}).replace("placeholder", "\\ud800")
    result, reasons = quarantine_reasons(tmp_path, [], [raw.encode()])
    assert reasons == {1: "invalid_utf8"}
    assert len(result.accepted) == 0


def test_parquet_invalid_utf8_quarantined(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = pa.array([b"ni\xf1o", "niño".encode()], type=pa.binary()).view(pa.string())
    table = pa.table(
        {
            "item_id": ["a", "b"],
            "region": ["SV", "SV"],
            "text": texts,
            "term": ["x", "x"],
            "reference": ["y", "y"],
            "task_type": ["define_term", "define_term"],
        }
    )
    path = tmp_path / "items.parquet"
    pq.write_table(table, path)
    result = ingest_files("bench", [str(path)])
    assert result.accepted["item_id"].tolist() == ["b"]
    assert result.quarantined["reason"].tolist() == ["invalid_utf8"]
    assert "\\xf1" in result.quarantined["raw_record"].iloc[0]
