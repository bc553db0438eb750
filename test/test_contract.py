"""Every ModelContract rule, directly and through an exported ONNX file whose metadata_props were edited.

Each bad value is refused with its message (by the reader and by the backend that opens the file); valid ones pass.
"""
import json
from dataclasses import asdict

import onnx
import pytest

from fcn_road_seg.backends import open_backend
from fcn_road_seg.contract import CONTRACT_VERSION, METADATA_PREFIX, ModelContract, read_onnx_contract
from fcn_road_seg.errors import ContractError, ModelError

SIZE = dict(input_height=96, input_width=320)
NEWER = r"model contract version {} is newer than this fcn_road_seg understands \({}\); upgrade fcn_road_seg"
# (field, bad value, the message it is refused with)
REFUSED = [
    ("input_height", 0, r"input size must be positive, got 0x320"),
    ("input_width", -32, r"input size must be positive, got 96x-32"),
    ("channel_order", "rgb", r"channel_order must be RGB or BGR, got 'rgb'"),
    ("channel_order", "YUV", r"channel_order must be RGB or BGR, got 'YUV'"),
    ("default_threshold", 0.0, r"default_threshold must lie in \(0, 1\), got 0.0"),
    ("default_threshold", 1.0, r"default_threshold must lie in \(0, 1\), got 1.0"),
    ("default_threshold", -0.2, r"default_threshold must lie in \(0, 1\), got -0.2"),
    ("contract_version", CONTRACT_VERSION + 1, NEWER.format(CONTRACT_VERSION + 1, CONTRACT_VERSION)),
]
ACCEPTED = [
    ("channel_order", "BGR"),
    ("channel_order", "RGB"),
    ("default_threshold", 0.001),
    ("default_threshold", 0.999),
    ("contract_version", CONTRACT_VERSION),
    ("contract_version", 1),  # older contracts are read
    ("input_height", 32),
]


def _ids(cases):
    return [f"{field}={value}" for field, value, *_ in cases]


@pytest.mark.parametrize("field,value,message", REFUSED, ids=_ids(REFUSED))
def test_each_rule_refuses_with_its_message(field, value, message):
    with pytest.raises(ContractError, match=message):
        ModelContract(**{**SIZE, field: value})
    good = asdict(ModelContract(**SIZE))
    with pytest.raises(ContractError, match=message):
        ModelContract.from_dict({**good, field: value})
    with pytest.raises(ContractError, match=message):
        ModelContract.from_metadata({**ModelContract(**SIZE).to_metadata(), METADATA_PREFIX + field: json.dumps(value)})


@pytest.mark.parametrize("field,value", ACCEPTED, ids=_ids(ACCEPTED))
def test_valid_values_are_accepted(field, value):
    contract = ModelContract(**{**SIZE, field: value})
    assert getattr(contract, field) == value
    assert ModelContract.from_metadata(contract.to_metadata()) == contract
    assert ModelContract.from_dict(json.loads(contract.to_json())) == contract


def test_metadata_without_a_contract_or_malformed_is_refused_naming_the_fix():
    with pytest.raises(ContractError, match=r"m.onnx has no fcn_road_seg contract.*fcn-road-seg export"):
        ModelContract.from_metadata({"producer": "someone else"}, source="m.onnx")
    props = ModelContract(**SIZE).to_metadata()
    for broken in ({**props, METADATA_PREFIX + "input_width": "{not json"},  # not JSON
                   {k: v for k, v in props.items() if k != METADATA_PREFIX + "input_height"},  # a field missing
                   {**props, METADATA_PREFIX + "default_threshold": '"0.5"'}):  # a string where a number belongs
        with pytest.raises(ContractError, match=r"m.onnx has a malformed contract .*; re-export the model"):
            ModelContract.from_metadata(broken, source="m.onnx")
    with pytest.raises(ContractError, match=r"plan.json has a malformed contract .*; rebuild it"):
        ModelContract.from_dict({"input_height": 96}, source="plan.json")
    # a key this version does not know (written by a newer minor release) is ignored, not fatal
    assert ModelContract.from_metadata({**props, METADATA_PREFIX + "future_field": "1"}) == ModelContract(**SIZE)


def _edited(tiny_onnx, tmp_path, field, value):
    """Write a copy of the exported tiny model with one contract field of its metadata_props replaced."""
    model = onnx.load(str(tiny_onnx))
    key = METADATA_PREFIX + field
    entries = [p for p in model.metadata_props if p.key == key]
    assert len(entries) == 1, f"the exported model has no {key}"
    entries[0].value = json.dumps(value)
    path = tmp_path / f"{field}.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("field,value,message", REFUSED, ids=_ids(REFUSED))
def test_an_onnx_file_with_a_tampered_contract_is_refused(tiny_onnx, tmp_path, field, value, message):
    path = _edited(tiny_onnx, tmp_path, field, value)
    with pytest.raises(ContractError, match=message):
        read_onnx_contract(path)
    with pytest.raises(ContractError, match=message):
        open_backend(path, "onnxruntime")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_an_onnx_file_whose_size_disagrees_with_its_graph_is_refused(tiny_onnx, tmp_path, runtime):
    with pytest.raises(ModelError, match=r"graph input shape .* differs from the contract's \(1, 64, 320, 3\)"):
        open_backend(_edited(tiny_onnx, tmp_path, "input_height", 64), runtime)


def test_an_onnx_file_with_a_valid_edit_is_accepted(tiny_onnx, tmp_path):
    assert read_onnx_contract(tiny_onnx).channel_order == "RGB"
    path = _edited(tiny_onnx, tmp_path, "channel_order", "BGR")
    assert read_onnx_contract(path).channel_order == "BGR"
    backend = open_backend(path, "onnxruntime")
    try:
        assert backend.contract.channel_order == "BGR" and backend.contract.input_shape == (1, 96, 320, 3)
    finally:
        backend.close()
    older = _edited(tiny_onnx, tmp_path, "contract_version", CONTRACT_VERSION - 1)
    assert read_onnx_contract(older).contract_version == CONTRACT_VERSION - 1
