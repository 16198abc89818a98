"""The in-process mode's trivial engine: every call gets the same fixed answer.

kamailio-kemi.cfg with ENGINE_MODE_INPROCESS imports ENGINE_MODULE (normally
kamailio.inprocess) in Kamailio's Python; bench/e2e_bench.py points its "trivial"
Kamailio at this module instead, so the figures beside this engine's are the KEMI
script's and Kamailio's own, with a decision that costs nothing. The answer is the
rtjson document in the file named by TRIVIAL_ANSWER_FILE (e2e_bench writes the real
engine's answer for a bench call there, so both route alike).
"""

from __future__ import annotations

import json
import os


class Engine:
    def __init__(self, answer: str) -> None:
        self.text = answer

    def answer(self, fields) -> str:
        return self.text


def _load() -> Engine:
    with open(os.environ["TRIVIAL_ANSWER_FILE"], encoding="utf-8") as file:
        return Engine(json.dumps(json.load(file), separators=(",", ":")))


def preload() -> list[str]:
    """Nothing to load before the fork (the interface of kamailio.inprocess.preload)."""
    return []


def start() -> Engine:
    return _load()
