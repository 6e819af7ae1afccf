"""Subprocess side of tests/test_media_fuzz.py: feed files to `decode_clip` and to the video processor and print
one JSON line per file. A watchdog (faulthandler) ends the process if one file takes longer than the per-item
timeout; the parent then records a hang and starts a new worker after that file. A crash (a signal) ends the process
the same way.

    python tests/media_fuzz_worker.py MANIFEST.json START TIMEOUT_S
"""

import faulthandler
import json
import sys


def outcome(call, path: str) -> dict:
    from processing.decoding import VideoDecodeError

    try:
        call()
    except VideoDecodeError as error:
        return {"result": "VideoDecodeError", "names_file": path in str(error) and error.path == path,
                "message": str(error)[:300]}
    except Exception as error:  # noqa: BLE001 -- anything else escaped the contract: report it
        return {"result": type(error).__name__, "message": str(error)[:300]}
    return {"result": "ok"}


def main() -> None:
    manifest, start, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    from modeling_t2v2t import T2V2TVideoProcessor
    from processing.decoding import decode_clip

    processor = T2V2TVideoProcessor(num_frames=4, size={"height": 16, "width": 16})
    with open(manifest) as file:
        paths = json.load(file)
    for index in range(start, len(paths)):
        path = paths[index]
        print(f"START {index}", flush=True)
        faulthandler.dump_traceback_later(timeout, exit=True)
        result = {
            "index": index,
            "decode_clip": outcome(lambda: decode_clip(path, 4), path),
            "processor": outcome(lambda: processor(videos=[path])["pixel_values_videos"], path),
        }
        faulthandler.cancel_dump_traceback_later()
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
