"""training/evaluate_retrieval.py end to end: a saved tiny checkpoint evaluated on the synthetic benchmark's test split,
arguments from the command line and from one JSON file."""

import json

import pytest
from tiny_models import tiny_config, tiny_tokenizer

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from training import evaluate_retrieval




@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoint")
    config = tiny_config(vision_config=dict(image_size=32, num_frames=2))
    T2V2TModel(config).save_pretrained(folder)
    T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config.vision_config), tiny_tokenizer(folder / "tok"),
                   max_length=16).save_pretrained(folder)
    return folder


def test_evaluate_from_command_line_and_json(checkpoint, tmp_path):
    script = evaluate_retrieval
    dataset_kwargs = {"split": "test", "out_dir": str(tmp_path / "bench"), "num_videos": 8, "workers": 1,
                      "progress": False}
    report = script.main(["--model_name_or_path", str(checkpoint), "--dataset", "synthetic",
                          "--dataset_kwargs", json.dumps(dataset_kwargs), "--k", "1",
                          "--output_file", str(tmp_path / "out.json")])
    assert report["num_videos"] == 2 and report["num_pairs_scored"] > 0
    assert set(report["metrics"]) == {"embedding", "reranked"}
    assert json.loads((tmp_path / "out.json").read_text())["metrics"] == report["metrics"]

    config_file = tmp_path / "eval.json"
    config_file.write_text(json.dumps({"model_name_or_path": str(checkpoint), "dataset": "synthetic",
                                       "dataset_kwargs": dataset_kwargs, "k": 0}))
    embedding_only = script.main([str(config_file)])
    assert set(embedding_only["metrics"]) == {"embedding"}
    assert embedding_only["metrics"]["embedding"] == report["metrics"]["embedding"]


def test_bad_arguments_are_named(checkpoint):
    script = evaluate_retrieval
    with pytest.raises(ValueError, match="--dataset 'msvd' is not one of"):
        script.main(["--model_name_or_path", str(checkpoint), "--dataset", "msvd"])
    with pytest.raises(ValueError, match="--dataset_kwargs is not valid JSON"):
        script.main(["--model_name_or_path", str(checkpoint), "--dataset", "synthetic", "--dataset_kwargs",
                     "{split: test}"])


def test_the_dataset_must_be_named(checkpoint, capsys):
    with pytest.raises(SystemExit):
        evaluate_retrieval.main(["--model_name_or_path", str(checkpoint)])
    assert "--dataset" in capsys.readouterr().err
