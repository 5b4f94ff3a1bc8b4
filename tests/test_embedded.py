"""One description in every saved file, one reader for all of them: formats, re-runs, hostile files."""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine import Engine, Input, Node, NullCache, Output, Registry, Seed, Workflow
from engine.context import RunInfo
from engine.embedded import read_description, workflow_from_file
from engine.errors import NoEmbeddedWorkflow
from engine.provenance import describe, rerunnable, sidecar
from engine.types import AUDIO, FLOAT, INT, VIDEO
from zoo import G, link

ROOT = Path(__file__).resolve().parent.parent


class Tone(Node):
    """A seeded noise burst (an AUDIO value that needs no model)."""

    type = "test.tone"
    inputs = {"seed": Seed(), "seconds": Input(FLOAT, "length", default=0.25)}
    outputs = {"audio": Output(AUDIO, "the sound")}

    def run(self, ctx, seed, seconds):
        from nodes.avmedia import Audio

        samples = np.random.default_rng(seed).uniform(-0.5, 0.5, (1, int(8000 * seconds))).astype(np.float32)
        return {"audio": Audio(samples, 8000, {"node": self.type, "seed": seed, "seconds": seconds})}


class Frames(Node):
    """Seeded random frames (a VIDEO value that needs no model)."""

    type = "test.frames"
    inputs = {"seed": Seed(), "frames": Input(INT, "how many", default=3)}
    outputs = {"video": Output(VIDEO, "the frames")}

    def run(self, ctx, seed, frames):
        from nodes.avmedia import Video

        pixels = np.random.default_rng(seed).integers(0, 255, (frames, 16, 16, 3), dtype=np.uint8)
        return {"video": Video(pixels, 4.0, None, {"node": self.type, "seed": seed, "frames": frames})}


@pytest.fixture
def media_registry(registry):
    return Registry([*registry, Tone, Frames])


@pytest.fixture
def saver(media_registry, tmp_path):
    """``saver(doc) -> RunResult``, on an engine without a cache (every run makes its values again)."""
    eng = Engine(media_registry, cache=NullCache(), output_dir=tmp_path / "out", workers=2)
    yield lambda doc, params=None: eng.run_sync(doc if isinstance(doc, Workflow) else Workflow.from_dict(doc), params)
    eng.close()


def picture_url(color=(200, 30, 30)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_doc(fmt: str) -> dict:
    return (G().node("load", "image.load", data=picture_url())
            .node("save", "image.save", images=link("load", "image"), format=fmt, prefix="img/x")
            .output("file", "save", "path").doc)


def audio_doc(fmt: str) -> dict:
    return (G().node("tone", "test.tone").node("save", "audio.save", audio=link("tone", "audio"), format=fmt)
            .param("seconds", ("tone", "seconds"), default=0.25).output("file", "save", "path").doc)


def video_doc(fmt: str) -> dict:
    return (G().node("clip", "test.frames").node("save", "video.save", video=link("clip", "video"), format=fmt)
            .output("file", "save", "path").doc)


SAVED = [("png", image_doc, "png"), ("webp", image_doc, "webp"), ("jpeg", image_doc, "jpg"),
         ("wav", audio_doc, "wav"), ("flac", audio_doc, "flac"), ("ogg", audio_doc, "ogg"), ("mp3", audio_doc, "mp3"),
         ("mp4", video_doc, "mp4"), ("gif", video_doc, "gif"), ("webp", video_doc, "webp")]


@pytest.mark.parametrize("fmt, make, found", SAVED, ids=[f"{m.__name__[:5]}-{f}" for f, m, _ in SAVED])
def test_embedded_every_saved_format_reads_back_by_its_bytes(saver, fmt, make, found):
    first = saver(make(fmt))
    path = Path(first.outputs["file"])
    described = read_description(path.read_bytes())
    assert described == read_description(path)  # a path and its bytes read the same
    assert described["format"] == found
    workflow = described["workflow"]
    assert set(workflow["nodes"]) == set(make(fmt)["nodes"])
    seeds = {n: first.seeds[n] for n in first.seeds}
    for node, seed in seeds.items():  # drawn seeds are written in
        assert workflow["nodes"][node]["inputs"]["seed"] == seed
    if make is not image_doc:
        assert described["params"]["seed"] == next(iter(seeds.values()))
    else:
        assert described["params"]["node"] == "image.load"
    # The description re-runs: the same seeds, a new file of the same kind.
    again = saver(workflow_from_file(path))
    assert again.seeds == first.seeds and Path(again.outputs["file"]).suffix == path.suffix


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_embedded_rerunning_audio_gives_the_same_samples(saver, fmt):
    import soundfile as sf

    first = saver(audio_doc(fmt), {"seconds": 0.5})
    again = saver(workflow_from_file(first.outputs["file"]))
    a, _ = sf.read(first.outputs["file"])
    b, _ = sf.read(again.outputs["file"])
    assert len(a) == 4000 and np.array_equal(a, b)


def test_embedded_text_and_json_files_carry_it_in_a_sidecar(saver):
    doc = (G().node("k", "primitive.json", value={"a": 1}).node("j", "json.save", value=link("k", "value"))
           .node("t", "text.save", text="hi", prefix="notes/n")
           .output("json", "j", "path").output("text", "t", "path").doc)
    result = saver(doc)
    for name in ("json", "text"):
        path = Path(result.outputs[name])
        assert sidecar(path).is_file()
        described = read_description(path)
        stamped = {node: {**body, "version": 1} for node, body in doc["nodes"].items()}  # each node's version
        assert described["workflow"]["nodes"] == stamped and described["params"] == {}
    assert json.loads(Path(result.outputs["json"]).read_text()) == {"a": 1}  # the value itself stays as it was
    assert read_description(sidecar(result.outputs["text"]))["format"] == "json"


def test_embedded_a_wav_too_small_for_its_description_is_read_through_its_sidecar(saver):
    doc = audio_doc("wav")
    doc["nodes"]["save"]["inputs"]["metadata"] = {"big": "x" * 20000}
    path = Path(saver(doc).outputs["file"])
    assert sidecar(path).is_file()
    found = read_description(path)
    assert found["format"] == "wav" and found["workflow"]["big"] == "x" * 20000
    with pytest.raises(NoEmbeddedWorkflow):  # the bytes alone hold only what the WAV kept of it
        read_description(path.read_bytes())


def test_embedded_a_workflow_json_is_its_own_description(tmp_path):
    doc = {"nodes": {"k": {"type": "primitive.json", "inputs": {"value": 1}}}}
    found = read_description(json.dumps(doc).encode())
    assert found == {"format": "json", "params": {}, "workflow": doc}


def test_embedded_given_metadata_is_stored_as_the_workflow(saver):
    doc = audio_doc("flac")
    doc["nodes"]["save"]["inputs"]["metadata"] = {"workflow": "music_gen"}
    found = read_description(saver(doc).outputs["file"])
    assert found["workflow"] == {"workflow": "music_gen"} and found["params"]["node"] == "test.tone"


def test_embedded_image_i_of_a_batch_is_described_alone_with_seed_plus_i():
    info = RunInfo("job", {"params": {"seed": {"description": "s", "bind": [{"node": "gen", "input": "seed"}]},
                                      "n": {"description": "n", "bind": [{"node": "gen", "input": "batch_size"}]}},
                           "nodes": {"gen": {"type": "image.generate", "inputs": {"prompt": {"from": "p", "output": "text"}}},
                                     "p": {"type": "text.join", "inputs": {"a": "x", "b": "y"}}}},
                   {"n": 3}, {"n": 3}, {"gen": 40}, {"gen": "seed"})
    pick = {"gen": {"type": "image.generate", "inputs": {"seed": 42, "batch_size": 1, "prompt": "x y"}},
            "other": {"type": "image.load", "inputs": {"path": "a.png"}}}
    described = describe(info, {"seed": 42}, pick=pick)
    doc = described["workflow"]
    assert doc["params"]["seed"]["default"] == 42 and doc["params"]["n"]["default"] == 1
    assert doc["nodes"]["gen"]["inputs"]["prompt"] == {"from": "p", "output": "text"}  # a link stays a link
    assert "other" not in doc["nodes"] and info.workflow["params"]["n"].get("default") is None  # no side effects
    assert describe(info, {})["workflow"]["params"]["seed"]["default"] == 40


def test_embedded_a_param_shared_by_seeds_drawn_apart_leaves_them_written_in(saver):
    doc = (G().node("a", "zoo.rand").node("b", "zoo.rand").param("seed", ("a", "seed"), ("b", "seed"))
           .node("s", "text.save", text="x").output("a", "a", "value").output("b", "b", "value")
           .output("file", "s", "path").doc)
    first = saver(doc)
    assert first.seeds["a"] != first.seeds["b"]
    rerun = read_description(first.outputs["file"])["workflow"]
    assert "seed" not in rerun.get("params", {})
    again = saver(rerun)
    assert (again.outputs["a"], again.outputs["b"]) == (first.outputs["a"], first.outputs["b"])


def test_embedded_older_files_rerun_by_saved_name_or_by_their_generator(registry):
    saved = {"music_gen": json.loads((ROOT / "workflows" / "music_gen.json").read_text())}
    params = {"node": "music.generate", "prompt": "calm", "seed": 4, "sample_rate": 32000}
    doc, values = rerunnable({"params": params, "workflow": {"workflow": "music_gen"}}, registry, saved.get)
    assert doc["name"] == "music_gen" and values == {"prompt": "calm", "seed": 4}
    assert doc["params"]["seed"]["default"] == 4 and "default" not in saved["music_gen"]["params"]["seed"]
    doc, values = rerunnable({"params": params, "workflow": None}, registry, saved.get)
    assert doc["nodes"] == {"gen": {"type": "music.generate", "inputs": {"prompt": "calm", "seed": 4}}}
    with pytest.raises(NoEmbeddedWorkflow, match="no workflow flow can re-run"):
        rerunnable({"params": {}, "workflow": None}, registry, saved.get)


def test_embedded_the_gateway_extract_answers_the_web_pages_shape(saver, registry):
    from gateway.extract import extract

    path = Path(saver(image_doc("png")).outputs["file"])
    body = extract(path.read_bytes(), registry, lambda name: None)
    assert body["format"] == "png" and body["params"] == {} and body["parameters"]["node"] == "image.load"
    assert body["workflow"]["nodes"]["save"]["type"] == "image.save"
    with pytest.raises(NoEmbeddedWorkflow, match="PNG"):
        extract(b"GIF87 not quite", registry, lambda name: None)


def test_embedded_flow_run_re_runs_a_text_file_by_its_sidecar(tmp_path, monkeypatch):
    from cli import main

    monkeypatch.setenv("FLOW_OUTPUT_DIR", str(tmp_path / "out"))
    runner = CliRunner()
    first = runner.invoke(main, ["run", str(ROOT / "workflows" / "hello.json"), "-p", "name=Ada", "--json"])
    assert first.exit_code == 0, first.output
    path = json.loads(first.stdout)["outputs"]["file"]
    again = runner.invoke(main, ["run", path, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["outputs"]["text"] == "Hello, Ada!"
    bogus = tmp_path / "x.wav"
    bogus.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    refused = runner.invoke(main, ["run", str(bogus)])
    assert refused.exit_code == 2 and "cannot read" in refused.output


# -- hostile and broken files -------------------------------------------------------------------


def _png(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"".join(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
                    for kind, data in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


def _audio_with_comment(comment: str, container: str = "WAV") -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", samplerate=8000, channels=1, format=container, subtype="PCM_16") as out:
        if comment:
            out.comment = comment
        out.write(np.zeros(80, np.float32))
    return buffer.getvalue()


def _plain(fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format=fmt)
    return buffer.getvalue()


def _mp4_box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


DEEP = '{"params": {}, "workflow": ' + "[" * 10_000 + "]" * 10_000 + "}"
HOSTILE = {
    "empty": b"",
    "random": bytes(random.Random(1).randrange(256) for _ in range(512)),
    "png without text": _plain("PNG"),
    "jpeg without exif": _plain("JPEG"),
    "gif without comment": _plain("GIF"),
    "wav without comment": _audio_with_comment(""),
    "nan in the json": _audio_with_comment('{"params": {"seed": NaN}, "workflow": null}'),
    "10,000-deep json": _audio_with_comment(DEEP, "FLAC"),
    "10,000-deep json file": DEEP.encode(),
    "huge integer": b'{"params": {"seed": ' + b"9" * 5000 + b"}}",
    "params not an object": b'{"params": [1], "workflow": null}',
    "not utf-8": b'{"params": {"a": "\xff\xfe"}}',
    "png entry nan": _png((b"tEXt", b"flow.parameters\0{\"a\": NaN}")),
    "png zip bomb": _png((b"zTXt", b"flow.workflow\0\0" + zlib.compress(b" " * (80 << 20)))),
    "png chunk longer than the file": _png()[:8] + struct.pack(">I", 1 << 30) + b"tEXt" + b"flow.workflow\0{",
    "mp4 box bigger than the file": b"\0\0\0\x18ftypisom\0\0\0\0isomiso2" + b"\xff\xff\xff\xffmoov",
    "mp4 box of size 4": b"\0\0\0\x18ftypisom\0\0\0\0isomiso2" + b"\0\0\0\x04moov",
    "mp4 comment not utf-8": b"\0\0\0\x18ftypisom\0\0\0\0isomiso2" + _mp4_box(b"moov", _mp4_box(b"udta", _mp4_box(
        b"meta", b"\0\0\0\0" + _mp4_box(b"ilst", _mp4_box(b"\xa9cmt", _mp4_box(b"data", b"\0\0\0\1\0\0\0\0\xff\xfe")))))),
    "truncated wav": _audio_with_comment('{"params": {}, "workflow": null}')[:30],
    "truncated ogg": b"OggS\0\x02" + b"\0" * 30,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_embedded_hostile_files_answer_the_named_error(name):
    with pytest.raises(NoEmbeddedWorkflow):
        read_description(HOSTILE[name])


@pytest.mark.parametrize("fmt, make", [("png", image_doc), ("wav", audio_doc), ("mp4", video_doc), ("gif", video_doc)])
def test_embedded_truncated_and_mangled_saved_files_answer_the_named_error_or_their_description(saver, fmt, make):
    data = Path(saver(make(fmt)).outputs["file"]).read_bytes()
    rng = random.Random(fmt)
    variants = [data[:cut] for cut in range(0, len(data), max(1, len(data) // 40))]
    for _ in range(60):
        mangled = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        variants.append(bytes(mangled))
    for variant in variants:
        try:
            found = read_description(variant)
        except NoEmbeddedWorkflow:
            continue
        assert set(found) == {"format", "params", "workflow"}


def test_embedded_a_missing_file_is_the_named_error(tmp_path):
    with pytest.raises(NoEmbeddedWorkflow, match="cannot read"):
        read_description(tmp_path / "nothing.png")
