"""The synthetic benchmark's modules keep one concern each: scene sampling knows no words, captions cover exactly
the scene vocabulary, and the claims that scene sampling compares are one-to-one with the canonical caption."""

import ast
from pathlib import Path

from processing.synthetic import benchmark as bench
from processing.synthetic import captions, scenes


def test_scene_sampling_imports_no_caption_or_rendering_code():
    tree = ast.parse(Path(scenes.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not imported & {"captions", "render", "benchmark"}, imported


def test_caption_words_cover_exactly_the_scene_vocabulary():
    assert set(captions.COLOUR_WORDS) == set(scenes.COLOURS)
    assert set(captions.SHAPE_WORDS) == set(scenes.SHAPES)
    assert set(captions.SIZE_WORDS) == set(scenes.SIZES)
    assert set(captions.ACTION_PHRASES) == set(scenes.ACTIONS)


def test_claims_are_one_to_one_with_the_canonical_caption():
    # Variants are rejected when their claims equal the base's; that must be the same as equal canonical captions.
    # Scenes of several seeds, so that the same content occurs more than once (a split never repeats it).
    scenes_seen = [video["scene"] for seed in range(3)
                   for video in bench.plan_split(bench.BenchmarkSettings(num_videos=150, seed=seed), "train")]
    by_caption, by_claims = {}, {}
    for scene in scenes_seen:
        caption, claims = captions.canonical_caption(scene), scenes.scene_claims(scene)
        by_caption.setdefault(caption, set()).add(claims)
        by_claims.setdefault(claims, set()).add(caption)
    assert all(len(found) == 1 for found in by_caption.values())
    assert all(len(found) == 1 for found in by_claims.values())
    assert len(by_caption) < len(scenes_seen)  # some content repeats, so equality was actually compared
