"""Gradio Space: search a gallery of videos by text with T2V2T.

    python app.py                                   # http://127.0.0.1:7860 (on a Space: whatever Spaces sets)
    python app.py --host 0.0.0.0 --port 7860 --checkpoint t2v2t-synthetic-quickstart

UI only: loading, indexing, validation and scoring live in `inference.py`. Open `/?q=a+red+star+spins` to run a
query as the page loads (without `q`, the first gallery video's caption is the query).
"""

import argparse
import logging
import os
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from inference import DemoEngine, SearchResult, UploadError, attention_overlay, frame_grid, without_paths

logger = logging.getLogger(__name__)

TABLE_HEADERS = ["rank", "video", "source", "embedding score", "rerank score", "what it shows"]
UPLOAD_HEADERS = ["video id", "file"]
ATTENTION_HEADERS = ["frame", "patch (row, col)", "took in text", "of it [CLS]/[SEP]", "words it attended to most"]
HIGHLIGHTED_PATCHES = 6
# Events run at once: two keep a 2-vCPU Space busy without making each search wait on the others' threads.
SEARCH_CONCURRENCY = 2
# Column headers on one line; gallery captions large and on a solid background so scores stay readable.
CSS = """
#results-table th, #results-table th *, #patch-words th, #patch-words th * { white-space: nowrap !important; }
#results-gallery .caption-label, #results-gallery figcaption, #results-gallery .caption {
    font-size: 14px !important; font-weight: 600; color: #fff !important; background: rgba(0, 0, 0, 0.78) !important;
    padding: 2px 6px !important; white-space: normal !important; line-height: 1.25; }
"""
RANK_CHOICES = [("Embedding similarity (stage 1)", "embedding"), ("Joint-encoder rerank (stage 2)", "rerank")]
INTRO = """
# T2V2T text-to-video search

Type what a video should show; the model ranks the gallery. **T2V2T** (text→video→text fusion with Bypass
cross-attention, built on VindLU) scores in two stages: the **embedding score** compares the text embedding with
the sampled frames' embeddings (the cosine with their normalised mean for the default checkpoint; VindLU-style
checkpoints average the per-frame cosines); the **rerank score** is the joint encoder's match
logit for the pair (text and video attend to each other). The default checkpoint is small and trained on CPU on the
project's synthetic benchmark (coloured shapes that appear, move, grow, spin...): its text tower is pretrained
(MiniLM, so any English query reads), its video tower learned only that benchmark, and the gallery holds 32 of its
test videos, which it never saw in training.
"""
RELEVANCE_NOTE = """
**Which frames matched (best result):** left, the cosine between the query and each sampled frame's embedding
(the embedding score is their mean, divided by the length of the mean frame embedding when the checkpoint
normalises it, as the default one does). Right, for T2V2T's Bypass cross-attention: the share of attention that the
frame's video tokens put on the *bypass* slot ("stay unchanged") instead of the query's words, averaged over heads,
tokens and text→video layers; a lower value means that frame's tokens took in more of the text. It shows what the
joint encoder attended to, not a calibrated relevance score.
"""
ATTENTION_NOTE = """
**Which patches took in your words (best result, T2V2T):** in the text→video layer every patch of every sampled
frame either attends to the query's words or takes the *bypass* and stays unchanged. Orange, bright patches took in
the most text; dark ones bypassed (averaged over heads and layers; the colour scale runs from the clip's least to its
most, printed under the frames). The outlined patches are the ones that took in the most, labelled with the word they
attended to most; the table lists their top words with the share of the patch's attention each got.
"""


def _checkpoint_markdown(engine: DemoEngine, name: str) -> str:
    loaded = engine.checkpoint(name)
    config = loaded.config
    vision = config.vision_config
    params = sum(p.numel() for p in loaded.model.parameters())
    lines = [f"**{name}**: fusion `{getattr(config, 'fusion_mode', '?')}`, {params / 1e6:.1f} M parameters, "
             f"{vision.num_frames} frames of {vision.image_size}x{vision.image_size} px per video, "
             f"vocabulary of {len(loaded.processor.tokenizer)} tokens."]
    metrics = loaded.metrics
    if "test_embedding_t2v_R1" in metrics:
        line = f"Its test text→video R@1: {metrics['test_embedding_t2v_R1']:.1f}% embedding-only"
        if "test_reranked_t2v_R1" in metrics:
            line += f", {metrics['test_reranked_t2v_R1']:.1f}% reranked"
        lines.append(line + f" (so results are ranked by **{loaded.recommended_rank_by}** by default).")
    return "  \n".join(lines)


def _frame_label(number: int, time: float | None) -> str:
    return f"{number}" if time is None else f"{number} ({time:.2f} s)"


def _kind(record) -> str:
    return "gallery" if record.source == "gallery" else "session"


def _attention_outputs(engine: DemoEngine, result: SearchResult):
    attention = result.attention
    if attention is None:
        return gr.Image(value=None, visible=False), gr.Dataframe(visible=False), gr.Markdown(visible=False)
    image = engine.media_file(attention_overlay(attention, highlight=HIGHLIGHTED_PATCHES), "session")
    rows = []
    for frame, row, column in attention.top_patches(HIGHLIGHTED_PATCHES):
        time = attention.frame_times[frame]
        words = ", ".join(f"{word} {share:.2f}" for word, share in attention.top_words(frame, row, column))
        rows.append([_frame_label(frame + 1, time), f"({row + 1}, {column + 1})",
                     round(float(attention.intake[frame, row, column]), 3),
                     round(attention.special_share(frame, row, column), 3), words])
    table = pd.DataFrame(rows, columns=ATTENTION_HEADERS)
    return (gr.Image(value=image, visible=True), gr.Dataframe(value=table, visible=True),
            gr.Markdown(visible=True))


def _result_outputs(engine: DemoEngine, result: SearchResult, checkpoint: str, num_uploads: int):
    gallery = [(engine.media_file(hit.preview, _kind(hit.record)),
                f"#{hit.rank} {hit.record.video_id} · emb {hit.embedding_score:.3f}"
                + ("" if hit.rerank_score is None else f" · rerank {hit.rerank_score:.2f}")) for hit in result.hits]
    table = pd.DataFrame(
        [[hit.rank, hit.record.video_id, hit.record.source, round(hit.embedding_score, 4),
          None if hit.rerank_score is None else round(hit.rerank_score, 3), hit.record.description]
         for hit in result.hits],
        columns=TABLE_HEADERS,
    )
    best = result.hits[0]
    relevance = result.relevance
    labels = [_frame_label(i + 1, t) for i, t in enumerate(relevance.frame_times)]
    frames = []
    for i, frame in enumerate(relevance.frames):
        caption = f"{labels[i]}: cos {relevance.cosine[i]:.3f}"
        if relevance.bypass_share is not None:
            caption += f", bypass {relevance.bypass_share[i]:.2f}"
        frames.append((engine.media_file(frame_grid(frame[None], scale=3), _kind(best.record)), caption))
    cosine = pd.DataFrame({"frame": labels, "cosine": relevance.cosine})
    # Bars from 0 (or below, for negative cosines) up to the maximum cosine of 1, so heights compare honestly.
    cosine_range = [min(0.0, float(np.floor(min(relevance.cosine) * 10) / 10)), 1.0]
    if relevance.bypass_share is None:
        bypass = gr.BarPlot(value=None, visible=False)
    else:
        bypass = gr.BarPlot(value=pd.DataFrame({"frame": labels, "bypass share": relevance.bypass_share}),
                            sort=labels, visible=True)
    status = (f"Searched {result.num_searched} videos ({num_uploads} uploaded by you) with **{checkpoint}**, ranked "
              f"by **{result.ranked_by}**. Query as the model reads it: `{result.cleaned_query}`.")
    if result.unknown_words:
        unknown = ", ".join(result.unknown_words)
        status += (f"  \n⚠️ Words this checkpoint does not know (read as [UNK]): **{unknown}**. Try the example "
                   "captions for its vocabulary.")
    cosine_plot = gr.BarPlot(value=cosine, sort=labels, y_lim=cosine_range)
    # An upload is never served back by path (only its session's own images are shown).
    video = best.record.path if best.record.source == "gallery" else None
    if video is None:
        status += "  \nThe best match is your upload: its sampled frames are shown below."
    return (gallery, table, video, frames, cosine_plot, bypass, status) + _attention_outputs(engine, result)


def build_demo(engine: DemoEngine, default_query: str | None = None) -> gr.Blocks:
    """The Blocks app around `engine`. Event API names: `/search`, `/add_video`, `/switch_checkpoint`."""
    names = engine.checkpoint_names()
    default = engine.default_checkpoint
    first = engine.checkpoint(default)
    default_query = default_query or engine.gallery[0].description
    examples = [record.description for record in engine.gallery[:: max(1, len(engine.gallery) // 6)]][:6]

    def progress_fn(progress: gr.Progress):
        return lambda fraction, desc: progress(fraction, desc=desc)

    def search(query, checkpoint, k, rank_by, uploads, progress=gr.Progress()):
        try:
            engine.checkpoint(checkpoint, progress=progress_fn(progress))
            result = engine.search(query, checkpoint, k=int(k), rank_by=rank_by, uploads=uploads or [])
        except (UploadError, ValueError) as error:
            raise gr.Error(without_paths(error)) from error
        return _result_outputs(engine, result, checkpoint, len(uploads or []))

    def search_if_query(query, checkpoint, k, rank_by, uploads, progress=gr.Progress()):
        if not (query or "").strip():  # after a checkpoint switch with an empty box: nothing to refresh
            return (gr.skip(),) * 10
        return search(query, checkpoint, k, rank_by, uploads, progress)

    def switch_checkpoint(checkpoint, uploads, progress=gr.Progress()):
        try:
            loaded = engine.checkpoint(checkpoint, progress=progress_fn(progress))
            for number, record in enumerate(uploads or []):
                progress((number + 1) / len(uploads), desc=f"Re-encoding your uploads: {number + 1}/{len(uploads)}")
                engine.encode_upload(record, checkpoint)
        except ValueError as error:
            raise gr.Error(without_paths(error)) from error
        rank = gr.Radio(value=loaded.recommended_rank_by, interactive=loaded.can_rerank)
        return _checkpoint_markdown(engine, checkpoint), rank, f"Checkpoint **{checkpoint}** loaded."

    def add_video(file, name, checkpoint, uploads, request: gr.Request, progress=gr.Progress()):
        if file is None:
            raise gr.Error("Choose a video file first.")
        uploads = list(uploads or [])
        try:
            record, added = engine.add_upload(file, checkpoint, uploads, filename=os.path.basename(file),
                                              video_id=name, progress=progress_fn(progress),
                                              session=request.session_hash or "anonymous")
        except UploadError as error:
            raise gr.Error(str(error)) from error
        finally:
            _delete_gradio_copy(file)
        if added:
            uploads.append(record)
            message = (f"Added **{record.video_id}** to your index ({len(uploads)} uploaded). Search for what it "
                       "shows; only your session sees it.")
        else:
            message = f"This file is already in your index as **{record.video_id}**."
        table = pd.DataFrame([[r.video_id, os.path.basename(r.path)] for r in uploads], columns=UPLOAD_HEADERS)
        return uploads, message, table

    def initial_query(request: gr.Request):
        return (request.query_params.get("q") or "").strip() or default_query

    retention = engine.limits.retention_seconds
    # Gradio's own cache (the images and videos it served) is swept on the same schedule as the uploads.
    with gr.Blocks(title="T2V2T text-to-video search", delete_cache=(int(max(60, retention / 4)), int(retention))) \
            as demo:
        # This session's uploaded VideoRecords; their files are deleted when the session ends or the state expires.
        uploads_state = gr.State([], time_to_live=retention, delete_callback=engine.discard_uploads)
        gr.Markdown(INTRO)
        with gr.Row():
            checkpoint = gr.Dropdown(names, value=default, label="Checkpoint", scale=1,
                                     info="Folders under spaces_demo/checkpoints/; switching re-indexes the gallery.")
            checkpoint_info = gr.Markdown(_checkpoint_markdown(engine, default), elem_id="checkpoint-info")
        with gr.Row(equal_height=True):
            query = gr.Textbox(label="Describe the video", placeholder="e.g. a small red star spins", scale=4,
                               elem_id="query")
            k = gr.Slider(1, 10, value=5, step=1, label="Results", scale=1)
            rank_by = gr.Radio(RANK_CHOICES, value=first.recommended_rank_by, label="Rank by", scale=2,
                               interactive=first.can_rerank)
            search_button = gr.Button("Search", variant="primary", scale=1)
        gr.Examples([[text] for text in examples], inputs=[query], label="Captions of gallery videos")
        status = gr.Markdown(elem_id="status")
        results = gr.Gallery(label="Top results (the frames the model saw of each video)", columns=5, height=300,
                             object_fit="contain", elem_id="results-gallery")
        table = gr.Dataframe(headers=TABLE_HEADERS, label="Scores", interactive=False, wrap=True,
                             elem_id="results-table", column_widths=["6%", "12%", "9%", "15%", "13%", "45%"])
        with gr.Row():
            best_video = gr.Video(label="Best match", autoplay=True, loop=True, interactive=False, scale=1, height=300)
            frames = gr.Gallery(label="Best match: sampled frames", columns=4, height=300, scale=2,
                                object_fit="contain")
        gr.Markdown(RELEVANCE_NOTE)
        with gr.Row():
            cosine_plot = gr.BarPlot(x="frame", y="cosine", title="Query–frame cosine", x_title="sampled frame",
                                     y_title="cosine similarity", elem_id="cosine-plot")
            bypass_plot = gr.BarPlot(x="frame", y="bypass share", title="Bypass share (T2V2T text→video layer)",
                                     x_title="sampled frame", y_title="mean bypass probability", y_lim=[0, 1],
                                     visible=first.has_bypass, elem_id="bypass-plot")
        attention_note = gr.Markdown(ATTENTION_NOTE, visible=first.has_patch_attention)
        attention_image = gr.Image(label="Best match: patches that took in the query's words (orange) or bypassed "
                                         "(dark)", type="filepath", interactive=False, visible=first.has_patch_attention,
                                   elem_id="patch-attention", show_label=False)
        attention_table = gr.Dataframe(headers=ATTENTION_HEADERS, label="Outlined patches: the words they attended "
                                       "to most", interactive=False, visible=first.has_patch_attention,
                                       elem_id="patch-words")
        with gr.Accordion("Add your own video", open=False):
            gr.Markdown(f"{', '.join(engine.limits.extensions)}; at most {engine.limits.max_bytes / 2**20:.0f} MB and "
                        f"{engine.limits.max_seconds:g} s. It is added to your session's index only. The model "
                        "was trained on synthetic shapes, so real footage ranks unpredictably.")
            with gr.Row():
                upload = gr.File(label="Video file", file_types=list(engine.limits.extensions), type="filepath")
                upload_name = gr.Textbox(label="Name (optional)", placeholder="defaults to the file name")
            add_button = gr.Button("Add to index")
            upload_status = gr.Markdown(elem_id="upload-status")
            upload_table = gr.Dataframe(headers=UPLOAD_HEADERS, label="Your uploads", interactive=False)

        outputs = [results, table, best_video, frames, cosine_plot, bypass_plot, status, attention_image,
                   attention_table, attention_note]
        search_inputs = [query, checkpoint, k, rank_by, uploads_state]
        search_button.click(search, search_inputs, outputs, api_name="search")
        query.submit(search, search_inputs, outputs, api_visibility="private")
        checkpoint.change(
            switch_checkpoint, [checkpoint, uploads_state], [checkpoint_info, rank_by, status],
            api_name="switch_checkpoint",
        ).then(search_if_query, search_inputs, outputs, api_visibility="private")
        add_button.click(add_video, [upload, upload_name, checkpoint, uploads_state],
                         [uploads_state, upload_status, upload_table], api_name="add_video")
        demo.load(initial_query, None, query, api_visibility="private").then(
            search, search_inputs, outputs, api_visibility="private")
    return demo


def _delete_gradio_copy(path: str) -> None:
    """Delete Gradio's temporary copy of an upload once handled: the engine keeps its own per-session copy, and
    Gradio's copy would otherwise stay fetchable by its URL until the cache sweep."""
    try:
        os.remove(path)
    except OSError as error:
        logger.warning("Could not delete the temporary upload copy: %s", type(error).__name__)


def launch_kwargs(engine: DemoEngine) -> dict:
    """What `launch` needs: the gallery is served by path (uploads and the engine's media never are: Gradio copies
    the images it shows into its own cache), oversized uploads are refused early, and the page's CSS."""
    return {"allowed_paths": [str(engine.gallery_dir)], "max_file_size": engine.limits.max_bytes, "css": CSS}


def start_retention_sweeper(engine: DemoEngine) -> threading.Thread:
    """Delete expired uploads and session images in the background (a backstop for sessions that never end
    cleanly), every quarter of the retention time, at most every 10 minutes."""
    interval = min(600.0, max(10.0, engine.limits.retention_seconds / 4))
    stop = threading.Event()

    def sweep():
        while not stop.wait(interval):
            try:
                engine.purge_expired()
            except OSError as error:  # keep serving; the next sweep tries again
                logger.warning("Retention sweep failed: %s", error)

    thread = threading.Thread(target=sweep, name="upload-retention", daemon=True)
    thread.stop = stop
    thread.start()
    return thread


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--checkpoint", default=None, help="default checkpoint folder name (else the first)")
    parser.add_argument("--checkpoints-dir", type=Path, default=None)
    parser.add_argument("--gallery-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.checkpoint:
        os.environ["T2V2T_DEMO_CHECKPOINT"] = args.checkpoint
    kwargs = {key: value for key, value in (("checkpoints_dir", args.checkpoints_dir),
                                            ("gallery_dir", args.gallery_dir)) if value is not None}
    engine = DemoEngine(**kwargs)
    engine.checkpoint(engine.default_checkpoint)  # load and index once, before the first visitor
    demo = build_demo(engine)
    start_retention_sweeper(engine)
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY)
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(engine))


if __name__ == "__main__":
    main()
