"""The chat page of ``roadmap serve`` in a real browser: headless Chromium driven by Selenium.

The browser is the system one (Debian's ``chromium`` and ``chromium-driver``), never a
download. Without it the test is skipped - unless ``ROADMAP_REQUIRE_BROWSER=1`` (set by CI),
which turns the skip into a failure. The model is the scripted fake; its first answer is paced like a slow CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

from shared.core.errors import RoadmapError

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Flags that keep a headless Chromium off the network and quick to start on a small machine.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,900")
WAIT = 60  # seconds; Chromium can be slow to start on two busy cores
ANSWER = "Hello! I stream my answer one word at a time, like the embedded model does."
INJECTION = '<script>window.injected = 1</script><img src=x onerror="window.injected = 2">'

pytestmark = pytest.mark.browser


def reply(messages):
    """The scripted model: a greeting, a cited answer, a tool call and its answer, an echo, or an error."""
    last = messages[-1].text
    if messages[-1].type == "tool":
        return f"The calculator says {last}."
    if "times" in last:
        return AIMessage("", tool_calls=[{"name": "calculator", "args": {"expression": "6 * 7"}, "id": "call_1"}])
    if "Follow-up question:" in last:  # a rewrite: keep the question as it is
        return last.rsplit("Follow-up question:", 1)[1].strip()
    if "<documents>" in last:
        return "The Glow lamp has a warranty of 36 months [1]."
    if "fail" in last:
        raise RoadmapError("the model gave up on this one; try again")
    if "script" in last:
        return f"You sent {last} and here is <b>bold</b> <script>window.injected = 3</script>"
    return ANSWER


@pytest.fixture
def browser(tmp_path):
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        reason = f"the browser test needs {' and '.join(missing)}: apt-get install chromium chromium-driver"
        if os.environ.get("ROADMAP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ROADMAP_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager (which may download drivers) is never run.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def test_chat_ask_docs_and_untrusted_text_in_the_browser(browser, live_server, paced_model, tiny_docs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    (tiny_docs / "box.md").write_text(
        'The Glow lamp box holds the lamp <img src=x onerror="window.injected = 4"> and a manual.', encoding="utf-8"
    )
    # Only the first answer is paced: it is the one watched while it is being written.
    url, _ = live_server(paced_model([reply] * 20, delay=0.1, paced=1))
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.05)

    def send(text):
        box = browser.find_element(By.ID, "message")
        box.send_keys(text)
        browser.find_element(By.ID, "send").click()

    def last_answer():
        return browser.find_elements(By.CSS_SELECTOR, "#messages li.ai")[-1]

    def text_of(element):
        return element.get_attribute("textContent")

    browser.get(url)
    wait.until(lambda b: b.find_element(By.ID, "message").is_enabled())

    # Chat: the answer appears while it is still being written, then completes.
    send("Hi there")
    wait.until(lambda b: "streaming" in last_answer().get_attribute("class")
               and 0 < len(text_of(last_answer().find_element(By.CLASS_NAME, "text"))) < len(ANSWER))
    wait.until(lambda b: "streaming" not in last_answer().get_attribute("class"))
    assert text_of(last_answer().find_element(By.CLASS_NAME, "text")) == ANSWER
    thread = text_of(browser.find_element(By.ID, "thread-label")).removeprefix("Conversation ")
    wait.until(lambda b: [text_of(button) for button in b.find_elements(By.CSS_SELECTOR, "#threads button")]
               == [f"{thread} (1)"])

    # Ask docs: the answer comes with its sources, and a source's text is shown as text.
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=ask]").click()
    send("What is in the Glow lamp box?")
    wait.until(lambda b: last_answer().find_elements(By.CSS_SELECTOR, ".sources summary"))
    answer = text_of(last_answer().find_element(By.CLASS_NAME, "text"))
    assert answer == "The Glow lamp has a warranty of 36 months [1]."
    sources = {text_of(s): s for s in last_answer().find_elements(By.CSS_SELECTOR, ".sources li")}
    assert any(name.startswith("lamp.md") for name in sources)
    box = next(item for name, item in sources.items() if name.startswith("box.md"))
    assert '<img src=x onerror="window.injected = 4">' in text_of(box.find_element(By.CLASS_NAME, "excerpt"))

    # Agent: the tool steps are shown, then the answer.
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=agent]").click()
    send("What is 6 times 7?")
    wait.until(lambda b: "streaming" not in last_answer().get_attribute("class"))
    steps = [text_of(step) for step in last_answer().find_elements(By.CSS_SELECTOR, ".steps li")]
    assert steps == ['calculator {"expression":"6 * 7"}', "-> 6 * 7 = 42"]
    assert text_of(last_answer().find_element(By.CLASS_NAME, "text")) == "The calculator says 6 * 7 = 42."

    # Markup in a message and in the model's answer is shown as text, never run or rendered.
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=chat]").click()
    send(INJECTION)
    wait.until(lambda b: text_of(last_answer().find_element(By.CLASS_NAME, "text")).endswith("</script>")
               and "streaming" not in last_answer().get_attribute("class"))
    mine = browser.find_elements(By.CSS_SELECTOR, "#messages li.human .text")[-1]
    assert text_of(mine) == INJECTION
    assert "<b>bold</b>" in text_of(last_answer())
    assert browser.find_elements(By.CSS_SELECTOR, "#messages script, #messages img, #messages b") == []
    assert browser.execute_script("return window.injected") is None

    # An error while answering is shown plainly, and the page keeps working.
    send("please fail")
    wait.until(lambda b: b.find_element(By.ID, "error").is_displayed())
    assert text_of(browser.find_element(By.ID, "error")) == "Error: the model gave up on this one; try again"
    browser.find_element(By.ID, "new-thread").click()
    assert browser.find_elements(By.CSS_SELECTOR, "#messages li") == []
    browser.find_element(By.CSS_SELECTOR, f"#threads button[data-thread='{thread}']").click()
    wait.until(lambda b: [text_of(t) for t in b.find_elements(By.CSS_SELECTOR, "#messages .text")][:2]
               == ["Hi there", ANSWER])
