import pandas as pd
import pytest

from eval_pipeline.core.demo_models import ConstantModel, FaultyModel
from eval_pipeline.core.inference import classify_output, predict_frame


class LoadedModel:
    """Calls a PythonModel the way a loaded pyfunc does: predict(frame)."""

    def __init__(self, python_model):
        self.python_model = python_model
        self.calls = 0

    def predict(self, frame):
        self.calls += 1
        return self.python_model.predict(None, frame)


def frame(regions):
    return pd.DataFrame(
        {"prompt": [f"¿Qué significa «x{i}»?" for i in range(len(regions))], "region": regions}
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, "null_output"),
        (float("nan"), "null_output"),
        ("", "empty_output"),
        ("  \n", "empty_output"),
        (42, "non_string_output"),
        (["niño"], "non_string_output"),
        ("niño", None),
    ],
)
def test_classify_output(value, code):
    assert classify_output(value)[1] == code


def test_each_failure_kind_is_a_row():
    model = LoadedModel(FaultyModel({"SV": "raise", "PE": "none", "MX": "empty", "GT": "number"}))
    result = predict_frame(model, frame(["SV", "PE", "MX", "GT", "AR"]))
    assert result["error_code"].tolist() == [
        "model_error",
        "null_output",
        "empty_output",
        "non_string_output",
        None,
    ]
    assert result["output"].tolist() == [None, None, None, None, "ok"]
    assert "RuntimeError: simulated failure" in result["error_message"].iloc[0]
    assert result["latency_ms"].notna().all()


def test_raising_batch_is_retried_item_by_item():
    model = LoadedModel(FaultyModel({"SV": "raise"}))
    result = predict_frame(model, frame(["PE", "SV", "PE", "PE"]), batch_size=4)
    assert result["error_code"].tolist() == [None, "model_error", None, None]
    assert model.calls == 5


def test_batches_cover_every_row():
    model = LoadedModel(ConstantModel("niño"))
    result = predict_frame(model, frame(["SV"] * 7), batch_size=3)
    assert model.calls == 3
    assert result["output"].tolist() == ["niño"] * 7


def test_wrong_output_count_marks_batch():
    class ShortModel:
        def predict(self, batch):
            return ["uno"]

    result = predict_frame(ShortModel(), frame(["SV", "PE"]), batch_size=2)
    assert set(result["error_code"]) == {"output_count_mismatch"}


def test_empty_frame():
    result = predict_frame(LoadedModel(ConstantModel("x")), frame([]))
    assert len(result) == 0
    assert {"output", "latency_ms", "error_code", "error_message"} <= set(result.columns)


def test_invalid_batch_size():
    with pytest.raises(ValueError, match="batch_size 0"):
        predict_frame(LoadedModel(ConstantModel("x")), frame(["SV"]), batch_size=0)
