#!/usr/bin/env python3
"""The console in a real browser: Debian's Chromium, driven by Playwright from PyPI.

    apt-get install chromium            # the browser; nothing here downloads one
    pip install playwright              # the driver only (no `playwright install`)

Driven by tests/api/console_browser.rs, which starts a real `fluxgate serve` with the fal
simulator and a webhook receiver, and passes what this script needs in the environment:

    FLUXGATE_URL       the server's base URL
    FLUXGATE_KEY       a full API key (fg_…)
    FLUXGATE_TOKEN     a browser token (fgt_…) for end user FLUXGATE_END_USER, without the
                       subscriptions:manage or admin scopes
    RECEIVER_URL       a webhook receiver that answers 204
    CHROMIUM           the browser executable
    SCREENSHOTS        a directory for the screenshots of the main pages

Each scenario asserts on what the user sees, then on what the API says happened. It writes one
JSON line to stdout with the ids it made, so the Rust side can check them in the database. No
fixed sleeps: every wait is for a condition, with a deadline.
"""
import json
import os
import re
import sys
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["FLUXGATE_URL"]
KEY = os.environ["FLUXGATE_KEY"]
TOKEN = os.environ["FLUXGATE_TOKEN"]
END_USER = os.environ["FLUXGATE_END_USER"]
RECEIVER = os.environ["RECEIVER_URL"]
SHOTS = os.environ["SCREENSHOTS"]
# Long enough for a loaded CI machine; a pass takes a fraction of it.
DEADLINE_MS = 20_000

expect.set_options(timeout=DEADLINE_MS)


def api(method, path, body=None, key=KEY):
    """The API as a backend sees it, to check what the console did."""
    request = urllib.request.Request(
        BASE + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def shot(page, name):
    # From the top: a full-page capture of a scrolled page draws the sticky header mid-page.
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)


def generation_id_in(url):
    """The id in a `#/generations/gen_…` address, or None."""
    marker = "#/generations/"
    if marker not in url:
        return None
    return url.split(marker, 1)[1].split("?", 1)[0] or None


def wait_for_generation_page(page, other_than=None):
    """The console navigates to a generation's page after creating it; its id."""
    page.wait_for_url(
        lambda url: generation_id_in(url) not in (None, other_than), timeout=DEADLINE_MS
    )
    return generation_id_in(page.url)


def image_loaded(page, selector):
    """Waits until the <img> at `selector` has decoded pixels (not a broken or blocked image)."""
    page.wait_for_function(
        "sel => { const i = document.querySelector(sel); return !!i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=DEADLINE_MS,
    )


def signed_in_page(context, credential):
    """A new tab, signed in by opening /console#key=…: the way a link from a backend signs in."""
    page = context.new_page()
    page.goto(BASE + "/console#key=" + credential)
    expect(page.get_by_test_id("signout")).to_be_visible()
    return page


def watch_for_errors(page, errors, expected_status=None):
    """Collects uncaught exceptions and console errors (CSP violations among them). Chromium
    logs every refused request as a console error; `expected_status` is the one a page is
    meant to meet (a token's 403s)."""
    expected = f"status of {expected_status} " if expected_status else None

    def on_console(message):
        if message.type == "error" and not (expected and expected in message.text):
            errors.append(f"console.error: {message.text}")

    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", on_console)


def signing_in_by_fragment_keeps_the_key_out_of_the_address_and_cookies(context, errors):
    page = context.new_page()
    watch_for_errors(page, errors)
    page.goto(BASE + "/console#key=" + KEY)
    expect(page.get_by_test_id("tenant")).to_have_text("acme")
    check(KEY not in page.url, f"the key is still in the address bar: {page.url}")
    check("key=" not in page.evaluate("location.hash"), "the fragment was not removed")
    check(page.evaluate("document.cookie") == "", "the console set a cookie")
    check(
        page.evaluate("key => Object.values(sessionStorage).includes(key)", KEY),
        "the session is not kept in sessionStorage",
    )
    check(page.evaluate("localStorage.length") == 0, "the key leaked into localStorage")
    expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")
    return page


def a_generation_created_from_the_form_appears_live_in_the_gallery(context, gallery, errors):
    """`gallery` stays open on the gallery while another tab creates; its card must arrive by
    the live stream, with no reload."""
    before = gallery.locator("a.card[data-generation-id]").count()
    form = signed_in_page(context, KEY)
    watch_for_errors(form, errors)
    form.get_by_test_id("nav-create").click()
    form.get_by_test_id("create-prompt").fill("a lighthouse on a basalt cliff at dawn")
    form.get_by_test_id("create-image-size").select_option("landscape_4_3")
    form.get_by_test_id("create-seed").fill("424242")
    # The live estimate: FLUX.2 Turbo's price for 1024×768 (0.79 MP, billed as 1 MP).
    expect(form.get_by_test_id("create-estimate")).to_have_attribute("data-usd", "0.008")
    shot(form, "create")
    form.get_by_test_id("create-submit").click()
    gen_id = wait_for_generation_page(form)
    form.close()

    card = gallery.locator(f'a.card[data-generation-id="{gen_id}"]')
    expect(card).to_have_attribute("data-status", "completed")
    image_loaded(gallery, f'a.card[data-generation-id="{gen_id}"] img')
    check(gallery.locator("a.card[data-generation-id]").count() == before + 1, "expected one new card")
    check(
        gallery.locator("a.card[data-generation-id]").first.get_attribute("data-generation-id") == gen_id,
        "the new card is not first (newest first)",
    )
    src = card.locator("img").get_attribute("src")
    g = api("GET", f"/v1/generations/{gen_id}")
    check(g["status"] == "completed" and g["seed"] == 424242, f"the API disagrees: {g}")
    check(src in [i["url"] for i in g["images"]], f"the card's image {src} is not one of {g['images']}")
    check(g["input"]["image_size_preset"] == "landscape_4_3", f"the form sent {g['input']}")
    return gen_id


def its_page_shows_the_images_and_varies_with_the_same_seed(gallery, gen_id):
    gallery.locator(f'a.card[data-generation-id="{gen_id}"]').click()
    gallery.wait_for_url(f"**/console#/generations/{gen_id}")
    image_loaded(gallery, "[data-testid=image] img")
    g = api("GET", f"/v1/generations/{gen_id}")
    image = gallery.get_by_test_id("image").first
    expect(image).to_contain_text(g["images"][0]["url"])
    expect(image).to_contain_text(g["images"][0]["source_url"])
    expect(gallery.get_by_test_id("event").first).to_be_visible()
    expect(gallery.get_by_test_id("seed")).to_have_text("424242")
    shot(gallery, "generation")

    gallery.get_by_test_id("vary-prompt").fill("a lighthouse on a basalt cliff at dusk")
    gallery.get_by_test_id("vary-submit").click()
    varied = wait_for_generation_page(gallery, other_than=gen_id)
    image_loaded(gallery, "[data-testid=image] img")
    v = api("GET", f"/v1/generations/{varied}")
    check(v["input"]["prompt"] == "a lighthouse on a basalt cliff at dusk", f"vary sent {v['input']}")
    check(v["seed"] == 424242, f"the variation's seed is {v['seed']}, not the original's")
    return varied


def a_subscription_created_in_the_console_shows_its_deliveries(page):
    page.get_by_test_id("nav-subscriptions").click()
    page.get_by_test_id("sub-url").fill(RECEIVER)
    page.get_by_test_id("sub-submit").click()
    secret = page.get_by_test_id("secret")
    expect(secret).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{20,}$"))
    shown_secret = secret.text_content()
    page.get_by_test_id("secret-panel").locator("a").first.click()
    page.wait_for_url("**/console#/subscriptions/sub_*")
    sub_id = page.url.split("#/subscriptions/", 1)[1]
    page.get_by_test_id("sub-test").click()
    # A generation made after subscribing is delivered too.
    made = api("POST", "/v1/generations", {"prompt": "a paper boat on a puddle"})
    delivered = wait_succeeded(sub_id, {"test.ping", "generation.completed"})
    page.get_by_test_id("deliveries-refresh").click()
    for d in delivered:
        row = page.locator(f'tr[data-delivery-id="{d["id"]}"]')
        expect(row).to_have_attribute("data-status", "succeeded")
        expect(row).to_contain_text(d["event_type"])
    row = page.locator(f'tr[data-delivery-id="{delivered[0]["id"]}"]')
    row.get_by_test_id("attempts-toggle").click()
    expect(page.get_by_test_id("attempt-row").first).to_contain_text("204")
    shot(page, "subscription")
    return sub_id, shown_secret, made["id"]


def wait_succeeded(sub_id, event_types):
    """Polls the API, as a backend would, until a delivery of each of `event_types` succeeded;
    those deliveries."""
    deadline = time.monotonic() + DEADLINE_MS / 1000
    while True:
        rows = api("GET", f"/v1/subscriptions/{sub_id}/deliveries?limit=50")["data"]
        done = {d["event_type"]: d for d in rows if d["status"] == "succeeded"}
        if event_types <= done.keys():
            return [done[t] for t in sorted(event_types)]
        check(time.monotonic() < deadline, f"not all of {event_types} were delivered: {rows}")
        time.sleep(0.02)  # the poll interval, as the Rust tests' wait_terminal


def usage_shows_spend_and_limits(page):
    page.get_by_test_id("nav-usage").click()
    expect(page.get_by_test_id("usage-chart")).to_be_visible()
    expect(page.get_by_test_id("limits-tenant")).to_be_visible()
    shot(page, "usage")


def the_gallery_shows_every_generation_newest_first(page, newest_first):
    page.get_by_test_id("nav-generations").click()
    cards = page.locator("a.card[data-generation-id]")
    expect(cards).to_have_count(len(newest_first))
    for i, gen_id in enumerate(newest_first):
        expect(cards.nth(i)).to_have_attribute("data-generation-id", gen_id)
        image_loaded(page, f'a.card[data-generation-id="{gen_id}"] img')
    shot(page, "gallery")


def a_browser_token_sees_only_its_end_user_and_is_refused_the_rest(context, errors, others):
    page = signed_in_page(context, TOKEN)
    watch_for_errors(page, errors, expected_status=403)
    expect(page.get_by_test_id("end-user")).to_contain_text(END_USER)
    expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")
    # The key's generations (no end user) are not this user's: none of them is shown.
    for gen_id in others:
        expect(page.locator(f'a.card[data-generation-id="{gen_id}"]')).to_have_count(0)

    # It may create as its end user, and the card arrives live in its own gallery.
    mine = api("POST", "/v1/generations", {"prompt": "a kite over dunes"}, key=TOKEN)
    check(mine["end_user"] == END_USER, f"the token's generation belongs to {mine['end_user']}")
    image_loaded(page, f'a.card[data-generation-id="{mine["id"]}"] img')

    page.get_by_test_id("nav-subscriptions").click()
    refused = page.get_by_test_id("refused")
    expect(refused).to_be_visible()
    expect(refused).to_have_attribute("data-scope", "subscriptions:manage")
    expect(page.get_by_test_id("sub-url")).to_be_hidden()
    shot(page, "refused")
    page.get_by_test_id("nav-usage").click()
    expect(page.get_by_test_id("refused")).to_have_attribute("data-scope", "admin")
    return mine["id"]


def main():
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ["CHROMIUM"],
            # As root in a container there is no user namespace for Chromium's sandbox; the
            # pages are our own, on loopback. The rest keep Chromium off the (closed) network.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        gallery = signing_in_by_fragment_keeps_the_key_out_of_the_address_and_cookies(context, errors)
        created = a_generation_created_from_the_form_appears_live_in_the_gallery(context, gallery, errors)
        varied = its_page_shows_the_images_and_varies_with_the_same_seed(gallery, created)
        sub_id, secret, delivered_gen = a_subscription_created_in_the_console_shows_its_deliveries(gallery)
        usage_shows_spend_and_limits(gallery)
        the_gallery_shows_every_generation_newest_first(gallery, [delivered_gen, varied, created])
        # A separate context: its own sessionStorage, as another person's browser would have.
        token_context = browser.new_context(viewport={"width": 1280, "height": 860})
        token_gen = a_browser_token_sees_only_its_end_user_and_is_refused_the_rest(
            token_context, errors, [created, varied, delivered_gen]
        )
        browser.close()
    check(not errors, "the pages reported errors:\n" + "\n".join(errors))
    print(json.dumps({
        "created": created,
        "varied": varied,
        "subscription": sub_id,
        "secret": secret,
        "delivered_generation": delivered_gen,
        "token_generation": token_gen,
    }))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
