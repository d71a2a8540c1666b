"""WEB_* settings (the web plugin's section of Settings, read only when `web` is enabled)."""

from __future__ import annotations

from dataclasses import dataclass

from pond import setting

# The expected form in pond's Chinese ConfigError sentence ("应为：...").
URL_FORM = "留空，或 http:// 或 https:// 开头的网址（反向代理对外的地址）"


def _url(value: str) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        return URL_FORM
    return None


@dataclass(frozen=True, slots=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = setting(8780, ge=0, le=65535)  # 0: any free port (tests)
    # The address people type (the reverse proxy's https://... URL); empty: http://host:port.
    public_url: str = setting("", check=_url)
    session_hours: float = setting(12.0, gt=0, le=24 * 30)
    setup_ttl_min: float = setting(60.0, gt=0, le=7 * 24 * 60)
    login_tries: int = setting(5, ge=1, le=100)  # wrong passwords of one user before a lock
    login_lock_min: float = setting(15.0, gt=0, le=24 * 60)
    login_rate_per_min: int = setting(20, ge=1, le=10_000)  # login posts per client address
