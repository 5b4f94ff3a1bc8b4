"""The image form's presets picker (GET /presets) in a real browser against a real gateway."""

from __future__ import annotations

from web_helpers import TINY, open_page


def test_image_form_offers_presets_and_runs_one_by_name(page, server):
    open_page(page, server, "endpoints/image/gen")
    form = page.locator("form.endpoint-form")
    picker = page.get_by_label("Preset")
    names = picker.evaluate("s => [...s.options].map(o => o.value)")
    assert {"portrait", "watercolor", "flower_scatter", "hero_background"} <= set(names)
    assert page.get_by_label("width").is_visible()

    picker.select_option("watercolor")
    assert not page.get_by_label("width").is_visible()  # the endpoint's own fields give way to the preset's
    assert "Fixed:" in form.locator(".preset-fields").inner_text()
    page.get_by_label("subject").fill("a small boat")
    preset_model = form.locator(".preset-fields").get_by_label("model", exact=True)
    [tiny] = [o for o in preset_model.evaluate("s => [...s.options].map(o => o.value)") if o.endswith(TINY)]
    preset_model.select_option(tiny)  # the preset's model picker offers the local models too
    form.locator(".preset-fields").get_by_label("seed").fill("4")
    form.get_by_role("button", name="Run").click()
    result = form.locator('.result-body[data-state="finished"]')
    result.wait_for(timeout=120_000)
    job = page.evaluate("""async () => {
        const [last] = (await (await fetch('/jobs?limit=1')).json()).jobs;
        return (await fetch(`/jobs/${last.id}?include=workflow`)).json();
    }""")
    assert job["name"] == "image_gen" and job["state"] == "finished"
    nodes = job["workflow"]["nodes"]  # the preset's workflow ran, with the subject given
    assert nodes["style"]["inputs"]["template"].startswith("{subject}, watercolor")
    assert job["params"]["subject"] == "a small boat" and job["params"]["seed"] == 4
