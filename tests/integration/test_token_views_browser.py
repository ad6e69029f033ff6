"""The token views in a real browser: headless Chromium driven by Selenium (Debian's
``chromium`` and ``chromium-driver``, installed by scripts/setup.sh) opens saved views, reads
the browser log for JavaScript errors, clicks tokens and switches selectors, and times a
2,048-token view (it must render and respond in under a second).

The browser runs offline: no network, a fresh profile, no background services.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import interp
from interp.figures import tokens as tv
from interp.gradients import ByDistance, FutureGradients

CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--window-size=1100,900")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, (
        "the browser test needs Debian's chromium and chromium-driver: bash scripts/setup.sh "
        "(as root) or apt-get install -y chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in CHROME_ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _open(browser, path):
    browser.get(path.as_uri())
    browser.get_log("browser")  # nothing from an earlier page
    browser.refresh()
    return browser


def _errors(browser) -> list[dict]:
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _shading(browser, root: int = 0) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('div.itv')[arguments[0]]"
        ".querySelectorAll('.itv-tok')).map(s => s.style.backgroundColor);", root)


# the time from an event to the frame after it is painted, measured in the page
TIMED = """
const [kind, index, value, done] = arguments;
const root = document.querySelector('div.itv');
const t0 = performance.now();
if (kind === 'click') root.querySelectorAll('.itv-tok')[index].click();
else { const s = root.querySelectorAll('select')[index]; s.value = String(value);
       s.dispatchEvent(new Event('change')); }
requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
"""


def _timed(browser, kind: str, index: int, value: int = 0) -> float:
    return browser.execute_async_script(TIMED, kind, index, value)


def _load_ms(browser) -> float:
    """From navigation start to the view drawn (the page's own clock)."""
    return browser.execute_script(
        "return performance.getEntriesByType('navigation')[0].loadEventEnd;")


# ------------------------------------------------------------------ results of a real model


@pytest.fixture(scope="module")
def model():
    return interp.load_model(interp.TinyConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2,
                                               d_vocab=61, n_ctx=64, seed=0),
                             device="cpu", dtype=torch.float32)


def test_future_share_view_loads_and_switches_layers(browser, model, tmp_path):
    torch.manual_seed(0)
    fg = interp.future_gradients(model, torch.randint(0, 61, (24,)), verbose=False)
    path = tv.future_share_view(fg).save(tmp_path / "future.html")
    _open(browser, path)
    assert _errors(browser) == []
    before = _shading(browser)
    assert len(before) == 24 and sum(bool(c) for c in before) >= 20  # shaded (last: no gradient)
    options = browser.execute_script(
        "return Array.from(document.querySelector('div.itv select').options).map(o => o.text)")
    assert options == [f"{s} · layer {layer}" for s in ("key", "value", "resid post")
                       for layer in (0, 1)]
    _timed(browser, "select", 0, 1)  # key · layer 1
    after = _shading(browser)
    assert after != before
    # the page shades by the pooled share it was given: layer 1's, not layer 0's
    share = fg.table[(fg.table.site == "k") & (fg.table.layer == 1)]
    assert browser.execute_script("return document.querySelector('div.itv').dataset.state") == "1"
    assert len(share.position.unique()) == 24
    # hover shows the three norms
    browser.execute_script("document.querySelectorAll('.itv-tok')[3].dispatchEvent("
                           "new MouseEvent('mouseover', {bubbles: true}))")
    info = browser.execute_script("return document.querySelector('.itv-info').textContent")
    assert "‖self‖" in info and "‖future‖" in info and "‖total‖" in info
    assert _errors(browser) == []


def test_who_reads_me_click_shades_later_losses_and_the_reverse(browser, model, tmp_path):
    torch.manual_seed(0)
    bd = interp.by_distance(model, torch.randint(0, 61, (20,)), max_distance=6, pairs=True,
                            verbose=False)
    path = tv.who_reads_me_view(bd).save(tmp_path / "who.html")
    _open(browser, path)
    assert _errors(browser) == []
    assert not any(_shading(browser))  # nothing picked yet
    _timed(browser, "click", 5)
    shaded = [i for i, c in enumerate(_shading(browser)) if c]
    # the losses that draw on position 5 within the kept distance: t = 5 .. 11
    assert shaded == list(range(5, 12))
    _timed(browser, "select", 1, 1)  # the reverse: click a loss position
    _timed(browser, "click", 12)
    _timed(browser, "click", 12)  # a second click clears, a third picks again
    shaded = [i for i, c in enumerate(_shading(browser)) if c]
    assert shaded == []
    _timed(browser, "click", 12)
    shaded = [i for i, c in enumerate(_shading(browser)) if c]
    assert shaded == list(range(6, 13))  # sources i >= 1 with 12 - i <= 6
    assert _errors(browser) == []


def test_attention_view_click_a_query(browser, model, tmp_path):
    torch.manual_seed(0)
    rec = interp.record(model, torch.randint(0, 61, (16,)), sites=("pattern",),
                        roles=interp.recording.RECORDABLE_ROLES, verbose=False)
    path = tv.attention_view(rec).save(tmp_path / "attention.html")
    _open(browser, path)
    assert _errors(browser) == []
    received = _shading(browser)
    _timed(browser, "click", 9)
    pattern = _shading(browser)
    assert pattern != received
    assert all(not c for c in pattern[10:])  # causal: query 9 reads keys 0..9 only
    _timed(browser, "select", 0, 5)  # layer 1, head 1
    assert _shading(browser) != pattern
    assert _errors(browser) == []


# ------------------------------------------------------------- 2,048 tokens: under a second


def _long_results(n: int = 2048, layers=(0, 1, 2, 3), max_distance: int = 32):
    """A FutureGradients and a ByDistance (with pairs) of the shapes a real 2,048-token run
    gives; the values are seeded noise (the page's speed does not depend on them)."""
    rng = np.random.default_rng(0)
    rows = []
    for layer in layers:
        total = rng.lognormal(size=n)
        share = rng.uniform(size=n)
        rows.append(pd.DataFrame(dict(
            sequence="0", layer=layer, site="k", head=0, position=np.arange(n),
            role=["bos"] + ["pause" if i % 50 == 0 else "regular" for i in range(1, n)],
            token_str=[f" w{i % 97}" for i in range(n)], self_norm=total * (1 - share),
            future_norm=total * share, total_norm=total, future_share=share,
            cos_self_future=0.0)))
    fg = FutureGradients(pd.concat(rows, ignore_index=True))
    src, tgt = np.meshgrid(np.arange(n), np.arange(max_distance + 1), indexing="ij")
    tgt = src + tgt
    keep = tgt < n - 1
    pairs = pd.concat([pd.DataFrame(dict(sequence="0", layer=layer, site="k",
                                         position=src[keep], loss_position=tgt[keep],
                                         grad_norm=rng.lognormal(size=int(keep.sum()))))
                       for layer in layers[:2]], ignore_index=True)
    bd = ByDistance(pd.DataFrame(dict(layer=[0], site=["k"], distance=[0], grad_norm=[1.0])),
                    dict(tokens={"0": dict(token_str=[f" w{i % 97}" for i in range(n)],
                                           roles=["bos"] + ["regular"] * (n - 1))}), pairs)
    return fg, bd


def _long_pages(n: int = 2048, window: int = 64) -> tuple[tv.TokenView, tv.TokenView]:
    """An attention view (two heads; each query reads BOS and its last ``window`` keys, about
    what survives the view's floor on SmolLM2) and a lens view (three offsets, top-5), built
    as the Python side builds them; seeded noise again."""
    rng = np.random.default_rng(1)
    tokens = [f" w{i % 97}" for i in range(n)]
    roles = ["bos"] + ["regular"] * (n - 1)
    series = []
    for h in range(2):
        keys = [sorted({0, *range(max(0, q - window), q + 1)}) for q in range(n)]
        attn = [tv._round(rng.dirichlet(np.ones(len(k))), 3) for k in keys]
        received = rng.uniform(size=n)
        series.append(dict(label=f"layer 0 · head {h}", keys=keys, attn=attn,
                           received=tv._round(received), received_max=1.0, sinks=[0]))
    attention = tv.TokenView("attention", tv._base("attention", "long", tokens, roles,
                                                   series=series, note_received=""))
    guesses = [[[f" g{(i + j) % 89}" for j in range(5)] for i in range(n)] for _ in range(3)]
    lens = tv.TokenView("lens", tv._base(
        "lens", "long", tokens, roles, lens=[guesses], model=guesses, offsets=[1, 2, 3], k=5,
        series=[dict(label=f"t+{k + 1}", layer_index=0, offset_index=k,
                     agree=tv._round(rng.integers(0, 2, n))) for k in range(3)]))
    return attention, lens


def test_2048_tokens_render_and_respond_in_under_a_second(browser, tmp_path, capsys):
    fg, bd = _long_results()
    attention, lens = _long_pages()
    timings = {}
    for name, view in (("future share", tv.future_share_view(fg)),
                       ("who reads me", tv.who_reads_me_view(bd)),
                       ("attention", attention), ("lens", lens)):
        path = view.save(tmp_path / f"{name.replace(' ', '_')}.html")
        _open(browser, path)
        assert _errors(browser) == []
        assert len(_shading(browser)) == 2048
        load = _load_ms(browser)
        render = float(browser.execute_script(
            "return document.querySelector('div.itv').dataset.renderMs"))
        click = [_timed(browser, "click", i) for i in (100, 1000, 2000)]
        select = [_timed(browser, "select", 0, v) for v in (1, 0)]
        timings[name] = dict(load=load, render=render, click=max(click), select=max(select))
        assert load < 1000 and render < 1000, timings
        assert max(click) < 1000 and max(select) < 1000, timings
        assert _errors(browser) == []
    with capsys.disabled():
        print("\n2,048-token views, ms (page load to drawn / script render / slowest click / "
              "slowest selector change):")
        for name, t in timings.items():
            print(f"  {name}: {t['load']:.0f} / {t['render']:.0f} / {t['click']:.0f} / "
                  f"{t['select']:.0f}")


# ------------------------------------------------------------------------------ the report


def test_report_embeds_the_four_views_of_the_example_prompt(browser, tmp_path):
    from interp.reporting import ReportConfig, report

    tokens = torch.randint(0, 61, (12, 20), generator=torch.Generator().manual_seed(0))
    config = ReportConfig(model=interp.TinyConfig(n_layers=2, d_model=32, n_heads=4,
                                                  n_kv_heads=2, d_vocab=61, n_ctx=64),
                          tokens=tokens, pause_rate=0.2, max_distance=4, probe_windows=12,
                          probe_tokens=20, probe_eval_positions=50, sections=("tokens",),
                          formats=())
    path = report(config, tmp_path, strict=True, verbose=False)
    assert "class='gap'" not in path.read_text(encoding="utf-8")
    for name in ("1_future_share", "2_who_reads_me", "3_attention", "4_lens"):
        assert (tmp_path / "tokens" / f"{name}.html").is_file()
    _open(browser, path)
    assert _errors(browser) == []
    kinds = browser.execute_script(
        "return Array.from(document.querySelectorAll('div.itv')).map(d => "
        "[d.querySelector('.itv-title').textContent, d.querySelectorAll('.itv-tok').length, "
        "d.dataset.itvDone])")
    assert [k[0] for k in kinds] == ["Future share of the gradient, token by token",
                                     "Who reads me: which later losses draw on each token",
                                     "Attention by head", "Future Lens by token"]
    assert all(k[1] == kinds[0][1] > 20 and k[2] == "1" for k in kinds)  # pauses were inserted
    roles = browser.execute_script(
        "return document.querySelectorAll('div.itv')[0].querySelectorAll('.itv-role').length")
    assert roles >= 1  # the pauses are marked
    for i in (1, 2):  # a click on a token changes the shading (who reads me, attention)
        before = _shading(browser, i)
        browser.execute_script(
            "document.querySelectorAll('div.itv')[arguments[0]].querySelectorAll('.itv-tok')[3]"
            ".click()", i)
        assert _shading(browser, i) != before
    browser.execute_script(  # a click on a token opens the lens table
        "document.querySelectorAll('div.itv')[3].querySelectorAll('.itv-tok')[3].click()")
    assert browser.execute_script("return document.querySelectorAll('table.itv-lens tr').length"
                                  ) == 1 + len(config.offsets)
    assert _errors(browser) == []
