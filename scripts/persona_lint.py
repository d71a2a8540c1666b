"""Copy that tells customers to reply with a word no rule answers (persona lint).

    python3 scripts/persona_lint.py                  the persona folder of this checkout
    python3 scripts/persona_lint.py --persona DIR    another persona folder

The bot is started in memory (no WeChat, a throw-away data folder) with the plugins of
BOT_PLUGINS (from the environment or .env; all plugins when unset), and every 回复“X” in
the copy is put to its rules the way a customer's message would be. The same check runs
when the bot starts and writes warnings to the log; persona_preview.py prints this list too.
Exit status: 0 nothing to fix, 1 some words have no answer, 2 the bot could not start.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import ROOT, ensure_venv

if __name__ == "__main__":
    ensure_venv()

import argparse
import asyncio
import logging
import os
import tempfile

sys.path.insert(0, str(ROOT))
from dotenv import dotenv_values

import plugins
from pond import App, Settings, SystemClock
from pond.persona.lint import Call, app_unanswered
from pond.transports.memory import MemoryTransport


async def _find(persona_dir: Path) -> list[Call]:
    env = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}
    env.update(os.environ)
    with tempfile.TemporaryDirectory(prefix="pond-lint-") as tmp:
        env.update(
            {
                "BOT_DATA_DIR": tmp,
                "BOT_PERSONA_DIR": str(persona_dir),
                "BOT_LOG_LEVEL": "ERROR",
                "BOT_PLUGINS": env.get("BOT_PLUGINS") or ",".join(plugins.available()),
            }
        )
        settings = Settings.from_mapping(env)
        clock = SystemClock(settings.bot.timezone)
        app = App(settings, MemoryTransport(clock.now), clock=clock)
        for plugin in plugins.load(settings.bot.plugins):
            app.include(plugin)
        logging.getLogger("pond").setLevel(logging.ERROR)  # start-up's own lint log: ours below
        app.checking = True  # a check: front ends (the web admin) serve nothing
        await app.start()
        try:
            return app_unanswered(app)
        finally:
            await app.stop()


def report(persona_dir: Path) -> list[str]:
    """The findings as lines for a copywriter (empty: nothing to fix)."""
    lines = []
    for call in asyncio.run(_find(persona_dir)):
        lines.append(
            f"{call.file}:{call.line} 请客户回复“{call.word}”，但没有任何规则回答它："
            "客户照做只会收到兜底回复。请在 persona/auto_reply/rules.toml 加一条规则，"
            "或者（群发、朋友圈文案）在活动文件 / 日历里用 reply 声明这个词和回复。"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="检查文案里的“回复XX”有没有规则回答。")
    parser.add_argument("--persona", type=Path, default=ROOT / "persona", help="人设文件夹")
    args = parser.parse_args(argv)
    try:
        lines = report(args.persona)
    except Exception as error:  # a config or persona problem: say it, do not trace back
        print(f"机器人没能启动，无法检查：{error}", file=sys.stderr)
        return 2
    if not lines:
        print("文案检查：所有“回复XX”都有规则回答。")
        return 0
    print(f"文案检查：{len(lines)} 处“回复XX”没有规则回答：")
    for line in lines:
        print("  " + line)
    return 1


if __name__ == "__main__":
    sys.exit(main())
