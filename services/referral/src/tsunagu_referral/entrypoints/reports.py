"""The coordinators' reports over HTTP: JSON, or CSV for Excel.

CSV is chosen by `?format=csv` or by an `Accept` header naming `text/csv` (the parameter wins).
It is UTF-8 with a byte-order mark, which Excel in Japan needs to read UTF-8 rather than Shift_JIS,
and CRLF line ends. Its one header row names each column in Japanese first with the JSON field in
brackets, `値 (value)`; label columns come before code columns, so the sheet reads in Japanese and
still sorts and joins by codes.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from tsunagu_contracts.dates import CalendarDate
from tsunagu_referral.adapters.reports import ReportsStore
from tsunagu_referral.domain.reports import Period
from tsunagu_referral.handlers import reports
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.auth import Role, require

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
BOM = "\ufeff"

From = Annotated[CalendarDate | None, Query(alias="from", description="First day (Japan time), included; omit: from the start.",
                                    examples=["2026-11-01"])]
To = Annotated[CalendarDate | None, Query(description="Last day (Japan time), included; omit: up to now.",
                                  examples=["2026-11-30"])]
Format = Annotated[Literal["json", "csv"] | None, Query(description="`csv`: UTF-8 with BOM for Excel; "
                                                        "otherwise the Accept header decides (JSON by default).")]
AS_CSV = {200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "JSON, or CSV (UTF-8 with BOM) with `?format=csv` or `Accept: text/csv`."}}


def period_of(first: date | None, last: date | None) -> Period | JSONResponse:
    """The period asked for, or the 422 answer for one that ends before it starts."""
    try:
        return Period(first, last)
    except ValueError:
        return JSONResponse(status_code=422, content={
            "message_ja": "入力内容に誤りがあります。何も保存されていません。",
            "message_en": "The request is invalid; nothing was stored.",
            "errors": [{"field": "to", "location": "query", "type": "period_reversed",
                        "message_ja": "終了日（to）が開始日（from）より前です。",
                        "message_en": "`to` is before `from`."}]})


def wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "csv"
    return "text/csv" in request.headers.get("accept", "")


def csv_response(header: list[str], rows: list[list], name: str, period: dict) -> Response:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([["" if cell is None else cell for cell in row] for row in rows])
    span = f"{period['from'] or 'start'}_{period['to'] or 'now'}"
    return Response(out.getvalue().encode("utf-8"), media_type=CSV_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="tsunagu-{name}-{span}.csv"'})


def recipient_cells(view: dict) -> list[str]:
    code = view.get("division") or view.get("partner_id")
    return [view["label_ja"], f"{view['kind']}:{code}"]


def summary_rows(report: dict) -> list[list]:
    def row(label: str, value, metric: str, breakdown: str = "", breakdown_code: str = "") -> list:
        return [label, breakdown, value, metric, breakdown_code]

    acceptance, completed, follow_ups = report["time_to_acceptance"], report["completed"], report["follow_ups"]
    rows = [
        row("期間の初日", report["period"]["from"], "period.from"),
        row("期間の末日", report["period"]["to"], "period.to"),
        row("新規相談件数", report["consultations"], "consultations"),
        row("相談者数（人）", report["people"], "people"),
        row("一人あたりの課題数", report["needs_per_person"], "needs_per_person"),
        row("一人あたりの課題数（市の参考値）", report["needs_per_person_city_reference"],
            "needs_per_person_city_reference"),
        row("紹介件数", report["referrals"], "referrals"),
    ]
    rows += [row("紹介件数（課題別）", n["referrals"], "referrals_by_need", n["need_label_ja"], n["need"])
             for n in report["referrals_by_need"]]
    rows += [row("紹介件数（紹介先別）", r["referrals"], "referrals_by_recipient", *recipient_cells(r))
             for r in report["referrals_by_recipient"]]
    rows += [
        row("受理された紹介件数", acceptance["accepted"], "time_to_acceptance.accepted"),
        row("受理までの時間・中央値（時間）", acceptance["median_hours"], "time_to_acceptance.median_hours"),
        row("受理までの時間・90パーセンタイル（時間）", acceptance["p90_hours"], "time_to_acceptance.p90_hours"),
        row("終了した紹介件数", completed["completed"], "completed.completed"),
        row("うち「支援につながった」", completed["supported"], "completed.supported"),
        row("「支援につながった」の割合", completed["supported_share"], "completed.supported_share"),
        row("フォローアップの回答数", follow_ups["answered"], "follow_ups.answered"),
        row("うち「支援が届き、役に立った」", follow_ups["helped"], "follow_ups.helped"),
        row("「役に立った」の割合", follow_ups["helped_share"], "follow_ups.helped_share"),
        row("終了した相談（ケース）数", report["cases_closed"], "cases_closed"),
    ]
    return rows


SUMMARY_HEADER = ["指標 (metric)", "内訳 (breakdown)", "値 (value)", "指標コード (metric_code)",
                  "内訳コード (breakdown_code)"]
PARTNERS_HEADER = ["紹介先 (recipient)", "紹介先コード (recipient_code)", "受けた紹介件数 (referrals_received)",
                   "受理 (accepted)", "辞退 (declined)", "受理率 (acceptance_rate)",
                   "初回回答までの時間・中央値（時間） (median_hours_to_first_answer)",
                   "辞退理由 (decline_reasons)", "期限超過 (overdue)", "通知不達 (deliveries_failed)"]
DECLINES_HEADER = ["段階 (stage)", "理由 (reason)", "課題 (need)", "件数 (count)", "段階コード (stage_code)",
                   "理由コード (reason_code)", "課題コード (need_code)"]


def partner_rows(report: dict) -> list[list]:
    return [[*recipient_cells(r), r["referrals_received"], r["accepted"], r["declined"], r["acceptance_rate"],
             r["median_hours_to_first_answer"],
             "; ".join(f"{code}:{n}" for code, n in r["decline_reasons"].items()), r["overdue"],
             r["deliveries_failed"]] for r in report["recipients"]]


def decline_rows(report: dict) -> list[list]:
    return [[r["stage_label_ja"], r["reason_label_ja"], r["need_label_ja"], r["count"], r["stage"], r["reason"],
             r["need"]] for r in report["by_reason_and_need"]]


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1/reports", tags=["reports 報告用の集計"],
                       dependencies=[Depends(require(Role.COORDINATOR))], responses=AS_CSV)

    async def answer(request: Request, first: date | None, last: date | None, format: str | None, build,
                     name: str, header: list[str], rows) -> Response | dict:
        period = period_of(first, last)
        if isinstance(period, JSONResponse):
            return period
        async with runtime.db.acquire() as conn:
            report = await build(ReportsStore(conn), period)
        if wants_csv(request, format):
            return csv_response(header, rows(report), name, report["period"])
        return report

    @router.get("/summary", summary="集計：相談・紹介・受理までの時間・終了 (summary of a period)")
    async def summary(request: Request, first: From = None, to: To = None, format: Format = None):
        return await answer(request, first, to, format, reports.summary, "summary", SUMMARY_HEADER, summary_rows)

    @router.get("/partners", summary="紹介先ごとの集計 (per recipient: received, answers, acceptance, failures)")
    async def partners(request: Request, first: From = None, to: To = None, format: Format = None):
        return await answer(request, first, to, format, reports.partners, "partners", PARTNERS_HEADER, partner_rows)

    @router.get("/declines", summary="紹介がつながらなかった理由 (why referrals failed, by reason and need)")
    async def declines(request: Request, first: From = None, to: To = None, format: Format = None):
        return await answer(request, first, to, format, reports.declines, "declines", DECLINES_HEADER, decline_rows)

    return router
