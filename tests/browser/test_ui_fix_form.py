"""The fix form in the browser: an engine picker that says what runs here and why not, only
the parameters the chosen engine uses (and plainly what it ignores), a short drafted
prompt, a seed box that shows every digit, and a recolour sent from it."""

from __future__ import annotations

import pytest

from ..helpers import RunningServer
from .conftest import OpenPage
from .steps import new_review, shot

pytestmark = pytest.mark.asyncio(loop_scope="package")

THREAD = (
    "The backdrop is too busy.. Also ... @Ed.",
    "@Editor link can you take this one?",
    "thanks!",
    "make the jacket dark green please",
)


async def test_the_engine_picker_shows_only_what_the_engine_uses(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Engines")
    async with web_server.client(session.id, session.tokens["editor"]) as editor_doc:
        editor_doc.add_pin(
            "jacket",
            x=250,
            y=350,
            text=THREAD[0],
            author=session.users["editor"],
            region=[200, 280, 200, 180],
        )
        for n, text in enumerate(THREAD[1:]):
            editor_doc.reply("jacket", f"c{n}", text=text, author=session.users["editor"])
        await editor_doc.flush()
    page = await open_page(session, "editor", refused=True)  # the bad colour is a 400
    await page.locator(".pin-row[data-pin-id=jacket]").click()
    await page.get_by_role("button", name="Fix this pin…").click()
    picker = page.get_by_label("Engine", exact=True)
    # Every engine Proofroom knows; those that cannot run here say why and cannot be picked.
    await page.locator("select[name=engine] option[value=recolor]").wait_for(state="attached")
    options = page.locator("select[name=engine] option")
    labels = [text.strip() for text in await options.all_inner_texts()]
    assert "classical (default)" in labels and "fill" in labels and "recolor" in labels
    diffusion = page.locator("select[name=engine] option[value=diffusion]")
    assert await diffusion.is_disabled()
    assert "no model configured" in await diffusion.inner_text()
    gemini = page.locator("select[name=engine] option[value=gemini]")
    assert await gemini.is_disabled() and "—" in await gemini.inner_text()
    assert await picker.input_value() == "classical"  # the server's default
    # classical: its methods as models, the seed; no prompt, and it says so.
    model = page.get_by_label("Model", exact=True)
    await model.wait_for()
    assert await model.input_value() == "ns"
    notes = page.locator(".engine-notes")
    await notes.filter(has_text="classical ignores the prompt").wait_for()
    assert not await page.get_by_label("Prompt", exact=True).is_visible()
    seed = page.get_by_label("Seed", exact=True)
    assert await seed.is_visible()
    # The seed box shows all ten digits of the largest seed.
    await seed.fill("4294967295")
    assert await seed.evaluate("el => el.scrollWidth <= el.clientWidth")
    await shot(page, "fix-form-classical")

    # fill: no model, no prompt; the seed makes the variants.
    await picker.select_option("fill")
    await notes.filter(has_text="fill ignores the prompt").wait_for()
    assert not await model.is_visible()
    assert await page.get_by_label("Variants").is_visible()

    # recolor: a colour and the prompt it may come from; no seed, one variant.
    await picker.select_option("recolor")
    await notes.filter(has_text="recolor ignores the seed").wait_for()
    assert not await seed.is_visible() and not await page.get_by_label("Variants").is_visible()
    prompt = page.get_by_label("Prompt", exact=True)
    assert await prompt.is_visible()
    # The drafted prompt: what to make, without the mentions and the chatter.
    assert await prompt.input_value() == "The backdrop is too busy. Make the jacket dark green"
    colour = page.get_by_label("Colour", exact=True)
    await colour.fill("blurple")
    await page.locator(".send-fix").click()
    await page.locator("#panel-fix .error", has_text="unknown colour 'blurple'").wait_for()
    await shot(page, "fix-form-recolor-refused")
    await colour.fill("#2e7d32")
    await page.locator(".send-fix", has_text="1 variant").click()
    await page.locator("#panel-fix .job[data-status=done]").wait_for(timeout=20_000)
    [layer] = list(web_server.services.rooms.rooms[session.id].layers)
    params = layer["params"]
    assert params["engine"] == "recolor" and params["color"] == "#2e7d32"
    assert "seed" in params  # recorded, though recolor has no use for it
    await shot(page, "fix-form-recolor-done")
