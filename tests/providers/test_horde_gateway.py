"""horde: images, privacy and presets over HTTP (/image/gen, /presets) against the local AI Horde stand-in."""

from __future__ import annotations

import asyncio
import time

import pytest

GEN = {"prompt": "a lighthouse at night", "model": "horde:stable_diffusion", "width": 64, "height": 64, "seed": 11}


def run(coro):
    return asyncio.run(coro)


def _files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".png", ".webp", ".jpg"))


def test_image_gen_on_horde_over_http(horde, horde_settings, horde_gateway):
    settings = horde_settings()

    async def main():
        async with horde_gateway(settings) as client:
            response = await client.post("/image/gen", json=GEN)
            body = await response.json()
            assert response.status == 200, body
            return body

    body = run(main())
    [job] = horde.jobs.values()
    assert job.body["params"]["seed"] == "11" and job.body["models"] == ["stable_diffusion"]
    [saved] = _files(settings.output_dir)
    assert saved.name.startswith("gen_") or "image" in str(saved)
    assert saved.name in str(body["outputs"]["file"])


def test_strict_privacy_answers_403_and_the_horde_hears_nothing(horde, horde_settings, horde_gateway):
    async def main():
        async with horde_gateway(horde_settings(privacy="strict")) as client:
            response = await client.post("/image/gen", json=GEN)
            return response.status, await response.json()

    status, body = run(main())
    assert status == 403 and body["error"]["cause"] == "privacy_refused", body
    assert "FLOW_PRIVACY" in body["error"]["message"]
    assert horde.requests == []


@pytest.mark.parametrize("setup, status, words", [({"fault": True}, 502, "faulted"),
                                                  ({"async_status": 429}, 429, "FLOW_HORDE_API_KEY")])
def test_fault_and_429_answer_clear_errors(horde, horde_settings, horde_gateway, setup, status, words):
    for key, value in setup.items():
        setattr(horde, key, value)

    async def main():
        async with horde_gateway(horde_settings()) as client:
            response = await client.post("/image/gen", json=GEN)
            return response.status, await response.json()

    got, body = run(main())
    assert got == status and words in body["error"]["message"], body
    assert "Traceback" not in str(body)


def test_cancelling_the_job_mid_queue_sends_delete(horde, horde_settings, horde_gateway):
    horde.queue_s, horde.queue = 30.0, 20

    async def main():
        async with horde_gateway(horde_settings(horde_poll_interval=0.5)) as client:
            response = await client.post("/image/gen?wait=false", json=GEN)
            assert response.status == 202
            url = (await response.json())["url"]
            while not horde.check_times:
                await asyncio.sleep(0.02)
            started = time.monotonic()
            assert (await client.delete(url)).status == 200
            while not horde.deleted and time.monotonic() - started < 5:
                await asyncio.sleep(0.02)
            took = time.monotonic() - started
            for _ in range(100):
                state = (await (await client.get(url)).json())["state"]
                if state != "running":
                    break
                await asyncio.sleep(0.05)
            return took, state

    took, state = run(main())
    assert horde.deleted == list(horde.jobs) and took < 1.0  # within one poll interval (0.5 s), with slack
    assert state == "cancelled"


def test_presets_listed_and_run_by_name_with_request_params_on_top(horde, horde_settings, horde_gateway):
    settings = horde_settings()

    async def main():
        async with horde_gateway(settings) as client:
            listed = await (await client.get("/presets")).json()
            portrait = await client.post("/image/gen", json={"preset": "portrait", "prompt": "an old sailor",
                                                             "model": "horde:stable_diffusion", "seed": 3,
                                                             "steps": 6})
            assert portrait.status == 200, await portrait.text()
            watercolor = await client.post("/image/gen", json={"preset": "watercolor", "subject": "a fox",
                                                               "model": "horde:stable_diffusion", "seed": 4})
            assert watercolor.status == 200, await watercolor.text()
            unknown = await client.post("/image/gen", json={"preset": "nope", "prompt": "x"})
            stray = await client.post("/image/gen", json={"preset": "watercolor", "subject": "x", "colour": 1})
            return listed, (unknown.status, await unknown.json()), (stray.status, await stray.json())

    listed, unknown, stray = run(main())
    by_name = {p["name"]: p for p in listed["presets"]}
    assert {"portrait", "watercolor", "flower_scatter", "hero_background"} <= set(by_name)
    assert by_name["portrait"]["endpoint"] == "/image/gen"
    assert by_name["portrait"]["fixed"]["height"] == 768 and by_name["portrait"]["fixed"]["steps"] == 2
    assert set(by_name["portrait"]["open"]) == {"prompt", "seed", "model"}
    assert "subject" in by_name["watercolor"]["open"] and by_name["hero_background"]["fixed"]["width"] == 1024

    portrait_job, watercolor_job = horde.jobs.values()
    assert portrait_job.body["params"]["width"] == 512 and portrait_job.body["params"]["height"] == 768
    assert portrait_job.body["params"]["steps"] == 6  # the request's steps, on top of the preset's 2
    assert portrait_job.body["prompt"] == "an old sailor ### blurry, deformed, text"
    assert watercolor_job.body["prompt"].startswith("a fox, watercolor painting")
    assert unknown[0] == 400 and "GET /presets" in unknown[1]["error"]["message"]
    assert "portrait" in unknown[1]["error"]["message"]
    assert stray[0] == 400 and "'colour'" in stray[1]["error"]["message"]
    assert [p.suffix for p in _files(settings.output_dir)] == [".png", ".webp"]


def test_flow_image_gen_on_horde_and_a_rerun_of_the_file_asks_for_the_same_seed(horde, monkeypatch, tmp_path):
    import json

    from click.testing import CliRunner

    from cli import main
    from engine.embedded import read_description

    for key, value in {"FLOW_OUTPUT_DIR": tmp_path / "cli-out", "FLOW_MODELS_DIR": tmp_path / "models",
                       "FLOW_PRIVACY": "flexible", "FLOW_HORDE_URL": horde.url, "FLOW_HORDE_POLL_INTERVAL": "0.05",
                       "FLOW_FETCH_ALLOW_PRIVATE": "true", "FLOW_MODEL_DEVICE": "cpu"}.items():
        monkeypatch.setenv(key, str(value))
    runner = CliRunner()
    result = runner.invoke(main, ["image", "gen", "--prompt", "a kite", "--model", "horde:stable_diffusion",
                                  "--width", "64", "--height", "64", "--seed", "77", "--json"])
    assert result.exit_code == 0, result.output
    path = json.loads(result.stdout)["outputs"]["file"]
    described = read_description(path)
    assert described["params"]["provider"] == "horde" and described["params"]["worker"] == "standin-worker"
    assert described["params"]["seed"] == 77

    rerun = runner.invoke(main, ["run", path, "--json"])
    assert rerun.exit_code == 0, rerun.output
    first, second = horde.jobs.values()
    assert second.body["params"]["seed"] == "77" and second.body["prompt"] == first.body["prompt"] == "a kite"


def test_an_identical_seeded_request_is_served_from_the_cache_and_writes_no_second_file(horde, horde_settings,
                                                                                      horde_gateway):
    settings = horde_settings()

    async def main():
        async with horde_gateway(settings) as client:
            answers = []
            for body in (GEN, GEN, {**GEN, "seed": 12}, {k: v for k, v in GEN.items() if k != "seed"}):
                response = await client.post("/image/gen", json=body)
                assert response.status == 200, await response.text()
                answers.append(await response.json())
            return answers

    first, repeat, other_seed, unseeded = run(main())
    assert repeat["outputs"]["file"] == first["outputs"]["file"]  # points at the file written the first time
    assert repeat["cached"] and len(horde.jobs) == 3  # the repeat never reached the Horde
    assert other_seed["outputs"]["file"] != first["outputs"]["file"]
    assert unseeded["seeds"]["gen"] not in (11, 12)  # no seed: a new one is drawn, by design, and reported
    assert len(_files(settings.output_dir)) == 3


def test_openapi_request_of_image_gen_names_its_presets_and_their_params(horde_settings, horde_gateway):
    async def main():
        async with horde_gateway(horde_settings()) as client:
            return await (await client.get("/openapi.json")).json()

    spec = run(main())
    body = spec["paths"]["/image/gen"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"portrait", "watercolor"} <= set(body["properties"]["preset"]["enum"])
    assert "subject" in body["properties"]  # watercolor's own param: a client validating its request passes
    assert body["properties"]["prompt"]["description"].startswith("what the image")  # the endpoint's own wins
    others = [op["requestBody"]["content"]["application/json"]["schema"] for path, item in spec["paths"].items()
              if path != "/image/gen" and (op := item.get("post", {})).get("tags") == ["endpoints"]]
    assert others and not any("preset" in schema["properties"] for schema in others)
