"""The auto_reply plugin's settings (AUTO_REPLY_<FIELD>; see config.example.env)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AutoReplyConfig:
    fallback_window_min: float = 60.0
    handoff_pause_min: float = 120.0  # 0 = until staff hand the chat back
    staff_room_id: str = ""
    notify_admins: bool = True
    history_size: int = 8
    loop_repeats: int = 3
    loop_window_min: float = 10.0
    loop_max_replies: int = 12
    loop_mute_min: float = 60.0
    reload_s: float = 2.0
    llm_enabled: bool = False
    llm_base_url: str = ""
    llm_model: str = ""
    llm_timeout_s: float = 8.0
    llm_daily_budget: int = 200
    llm_contact_daily: int = 10
    llm_max_chars: int = 300
    llm_max_tokens: int = 400
    llm_temperature: float = 0.5
    llm_off_hours: bool = False
