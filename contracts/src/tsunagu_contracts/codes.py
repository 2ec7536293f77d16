"""Code lists: stable English codes on the wire, Japanese labels for people.

A code never changes meaning and is never reused; a new situation gets a new code. Labels may be
reworded. Each list's JSON Schema carries its labels as `x-labels-ja`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


class LabelledCode(StrEnum):
    """A code with its Japanese label: `NeedCategory.HOUSING.label_ja == "住まい"`."""

    label_ja: str

    def __new__(cls, code: str, label_ja: str) -> "LabelledCode":
        member = str.__new__(cls, code)
        member._value_ = code
        member.label_ja = label_ja
        return member

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler.resolve_ref_schema(handler(schema))
        json_schema["description"] = (cls.__doc__ or "").strip()
        json_schema["x-labels-ja"] = {m.value: m.label_ja for m in cls}
        return json_schema

    @classmethod
    def labels(cls) -> dict[str, str]:
        return {m.value: m.label_ja for m in cls}


class NeedCategory(LabelledCode):
    """The 16 boxes of the national standard intake form (自立相談支援機関使用標準様式【1】)."""

    HEALTH = "health", "病気や健康・障害"
    HOUSING = "housing", "住まい"
    INCOME = "income", "収入・生活費"
    RENT_LOAN = "rent_loan", "家賃やローンの支払い"
    TAX_UTILITIES = "tax_utilities", "税金や公共料金等の支払い"
    DEBT = "debt", "債務"
    JOB_SEARCH = "job_search", "仕事探し・就職"
    WORK_TROUBLE = "work_trouble", "仕事上の不安やトラブル"
    COMMUNITY = "community", "地域との関係"
    FAMILY = "family", "家族との関係"
    CHILDCARE = "childcare", "子育て"
    ELDER_CARE = "elder_care", "介護"
    WITHDRAWAL = "withdrawal", "ひきこもり・不登校"
    ABUSE_DV = "abuse_dv", "DV・虐待"
    NO_FOOD = "no_food", "食べるものがない"
    OTHER = "other", "その他"


class Division(LabelledCode):
    """The city's counters (庁内の窓口), including those on the housing support council."""

    SELF_RELIANCE = "self_reliance", "自立相談支援（地域福祉課）"
    LIVING_SUPPORT = "living_support", "生活支援課（生活保護）"
    HOUSING = "housing", "住宅課"
    PUBLIC_HEARING = "public_hearing", "広聴課（市民相談）"
    GENDER_EQUALITY = "gender_equality", "男女共同参画課（DV相談）"
    CHILD_FAMILY = "child_family", "子ども家庭課"
    ELDERLY = "elderly", "高齢者関係課（介護保険・地域包括）"
    DISABILITY = "disability", "障がい者福祉課"
    URBAN_DEVELOPMENT = "urban_development", "都市整備課"
    TAX = "tax", "納税課"
    INSURANCE_PENSION = "insurance_pension", "保険年金課"
    HEALTH = "health", "健康づくり課（精神保健）"
    EDUCATION = "education", "教育指導課（不登校）"
    EMPLOYMENT = "employment", "就労支援（生活支援課）"


class IntakeChannel(LabelledCode):
    """How the person reached the city."""

    COUNTER = "counter", "窓口に来所"
    PHONE = "phone", "電話"
    OUTREACH = "outreach", "訪問・アウトリーチ"
    PARTNER_REFERRAL = "partner_referral", "連携団体からのつなぎ"
    OTHER_DIVISION = "other_division", "他の窓口からのつなぎ"
    ONLINE = "online", "オンライン"
    OTHER = "other", "その他"


class Urgency(LabelledCode):
    """How soon the person needs help."""

    IMMEDIATE = "immediate", "緊急（当日対応）"
    HIGH = "high", "高（数日以内）"
    NORMAL = "normal", "通常"


class RecipientKind(LabelledCode):
    """Who receives a referral or a consent: a city division or a Team Zama partner."""

    DIVISION = "division", "庁内の窓口"
    PARTNER = "partner", "連携団体（チーム座間）"


class ConsentPurpose(LabelledCode):
    """What the person agreed that their information may be used for."""

    REFERRAL = "referral", "支援機関へのつなぎ"
    HOUSING_SUPPORT = "housing_support", "居住支援（住まい探し・入居・見守り）"
    EMPLOYMENT_SUPPORT = "employment_support", "就労支援"
    CHECK_IN = "check_in", "見守り・安否確認"
    ESTATE_CLEARANCE = "estate_clearance", "残置物処理・遺品整理"


PROVISION_ITEMS: dict[ConsentPurpose, tuple[str, ...]] = {
    # To reach the person and be sure it is them.
    ConsentPurpose.REFERRAL: ("name", "name_kana", "phone"),
    ConsentPurpose.EMPLOYMENT_SUPPORT: ("name", "name_kana", "phone"),
    # Finding a home and moving in start from where the person lives now.
    ConsentPurpose.HOUSING_SUPPORT: ("name", "name_kana", "phone", "address"),
    # Visits and calls to the tenancy.
    ConsentPurpose.CHECK_IN: ("name", "phone", "address"),
    # Whose home it was, and where: after a death there is nobody to call.
    ConsentPurpose.ESTATE_CLEARANCE: ("name", "address"),
}
"""The items of a person a recipient receives for each purpose: no more than that purpose needs.
Intake gives no more than these, and the partner no more than intake gave. The consultation's
summary and the counter's notes go to none."""


def provided(person: dict, purpose: ConsentPurpose | str) -> dict[str, object]:
    """The items of `person` given for `purpose`: those it needs that are there, in a fixed order."""
    return {item: person[item] for item in PROVISION_ITEMS[ConsentPurpose(purpose)] if person.get(item)}


SUPPORT_FOR_NEED: dict[NeedCategory, ConsentPurpose] = {
    NeedCategory.HOUSING: ConsentPurpose.HOUSING_SUPPORT,
    NeedCategory.JOB_SEARCH: ConsentPurpose.EMPLOYMENT_SUPPORT,
    NeedCategory.WORK_TROUBLE: ConsentPurpose.EMPLOYMENT_SUPPORT,
}
"""The support a need is referred for: a consent given for that support reaches the need's referrals,
as a consent to referral itself reaches every referral. A consent to check-ins, or to clear a home,
reaches none."""


def referral_purposes(need: "NeedCategory | str | None") -> frozenset[ConsentPurpose]:
    """The consent purposes one of which a partner's referral for this need rests on: its events, its
    answers and the person's details. A referral whose need is not known here: a consent to referral."""
    support = SUPPORT_FOR_NEED.get(NeedCategory(need)) if need else None
    return frozenset({ConsentPurpose.REFERRAL, *([support] if support else [])})


class ConsentMethod(LabelledCode):
    """How consent was given."""

    WRITTEN = "written", "書面"
    ORAL = "oral", "口頭（記録あり）"
    ELECTRONIC = "electronic", "電子的な同意"


class LegalBasis(LabelledCode):
    """Statutory grounds for sharing without the person's consent, decided and recorded."""

    SUPPORT_CONFERENCE_SWA_106_6 = "support_conference_swa_106_6", "支援会議（社会福祉法第106条の6）"
    SUPPORT_CONFERENCE_SRA_9 = "support_conference_sra_9", "支援会議（生活困窮者自立支援法第9条）"
    PROTECTION_OF_LIFE = "protection_of_life", "人の生命・身体の保護のため緊急に必要な場合（個人情報保護法）"


class DeclineReason(LabelledCode):
    """Why a recipient declined a referral."""

    CAPACITY_FULL = "capacity_full", "受け入れ枠がない"
    OUTSIDE_AREA = "outside_area", "対象地域外"
    OUTSIDE_SERVICE = "outside_service", "支援内容の対象外"
    CONFLICT_OF_INTEREST = "conflict_of_interest", "利益相反・関係者"
    NEEDS_SPECIALIST = "needs_specialist", "専門機関での対応が必要"
    OTHER = "other", "その他"


class ReferralOutcome(LabelledCode):
    """How a referral ended: whether it led to help, and if not, why."""

    SUPPORTED = "supported", "支援につながった"
    NO_FUNDS = "no_funds", "資金・制度の不足で支援できなかった"
    NOT_ELIGIBLE = "not_eligible", "制度の対象外だった"
    COULD_NOT_REACH = "could_not_reach", "本人と連絡がとれなかった"
    PERSON_WITHDREW = "person_withdrew", "本人が辞退した"
    REFERRED_ELSEWHERE = "referred_elsewhere", "他の機関へつないだ"
    OTHER = "other", "その他"


class RerouteReason(LabelledCode):
    """Why a referral went to another recipient."""

    DECLINED = "declined", "辞退されたため次の候補へ"
    OVERDUE = "overdue", "期限内に受理されなかったため"
    STAFF_DECISION = "staff_decision", "職員の判断"
    CONSENT_WITHDRAWN = "consent_withdrawn", "同意が撤回されたため"
    PARTNER_UNREACHABLE = "partner_unreachable", "連携団体に通知が届かなかったため"
    STATUTORY_BASIS_ENDED = "statutory_basis_ended", "支援会議での共有の根拠が終了したため"


class FollowUpOutcome(LabelledCode):
    """What the person told the counter when asked whether the help arrived (フォローアップ)."""

    REACHED_HELPED = "reached_helped", "支援が届き、役に立った"
    REACHED_NOT_HELPED = "reached_not_helped", "支援は届いたが、役に立たなかった"
    COULD_NOT_REACH = "could_not_reach", "本人と連絡がとれなかった"


class ContactMethod(LabelledCode):
    """How a recipient reached the person."""

    IN_PERSON = "in_person", "面談"
    HOME_VISIT = "home_visit", "訪問"
    PHONE = "phone", "電話"
    ONLINE = "online", "オンライン"
    LETTER = "letter", "手紙"


class CaseClosureReason(LabelledCode):
    """Why a case was closed."""

    RESOLVED = "resolved", "課題が解決した"
    STABLE_WITH_SUPPORT = "stable_with_support", "継続的な支援につながり安定した"
    PERSON_WITHDREW = "person_withdrew", "本人の希望で終了"
    MOVED_AWAY = "moved_away", "転出"
    DIED = "died", "死亡"
    UNREACHABLE = "unreachable", "連絡がとれない"


class TenancyStage(LabelledCode):
    """Stages of housing support, from house-hunting to the end of the tenancy."""

    HOUSE_HUNTING = "house_hunting", "住まい探し"
    APPLICATION = "application", "入居申込・審査"
    CONTRACT = "contract", "契約"
    MOVE_IN = "move_in", "入居"
    ACCOMPANIMENT = "accompaniment", "入居後の伴走支援"
    ENDED = "ended", "終了"


class TenancyEndReason(LabelledCode):
    """Why a tenancy ended."""

    MOVED_OUT = "moved_out", "転居"
    MOVED_TO_FACILITY = "moved_to_facility", "施設への入所"
    HOSPITALISED = "hospitalised", "長期入院"
    DIED = "died", "死亡"
    EVICTED = "evicted", "退去（明渡し）"
    CONTRACT_ENDED = "contract_ended", "契約満了"
    PERSON_WITHDREW = "person_withdrew", "本人の希望で支援を終了"


class CheckInResult(LabelledCode):
    """What a check-in (見守り) found."""

    WELL = "well", "問題なし"
    CONCERN = "concern", "気がかりあり"
    NEEDS_SUPPORT = "needs_support", "支援が必要"
    EMERGENCY = "emergency", "緊急対応が必要"
    NOT_AT_HOME = "not_at_home", "不在"


class CheckInKind(LabelledCode):
    """What kind of check-in (見守り) a schedule asks for."""

    SAFETY_CONTACT = "safety_contact", "安否確認（電話・センサー等）"
    VISIT = "visit", "訪問"


class CheckInEscalationReason(LabelledCode):
    """Why a check-in was escalated to the responsible council member at once."""

    NOT_AT_HOME_TWICE = "not_at_home_twice", "2回続けて不在"
    EMERGENCY = "emergency", "緊急対応が必要"


class HousingRole(LabelledCode):
    """What a housing support council member takes on (居住支援協議会の役割)."""

    HOUSE_HUNTING = "house_hunting", "住まい探し・内見同行"
    GUARANTOR = "guarantor", "家賃債務保証・緊急連絡先"
    MOVING = "moving", "引越し・入居準備"
    CHECK_INS = "check_ins", "見守り・安否確認"
    LIFE_SUPPORT = "life_support", "入居後の生活支援（伴走支援）"
    ESTATE_CLEARANCE = "estate_clearance", "残置物処理・遺品整理"


class PartnerResponseKind(LabelledCode):
    """A partner's answer to a referral."""

    ACCEPTED = "accepted", "受理"
    DECLINED = "declined", "辞退"
    CONTACT_MADE = "contact_made", "本人と接触"
    COMPLETED = "completed", "支援終了"


class DeliveryChannel(LabelledCode):
    """How events reach a partner."""

    WEBHOOK = "webhook", "Webhook（HTTPでの通知）"
    KAFKA = "kafka", "Kafkaトピック"
    EMAIL = "email", "メール（Webhookのない団体へのお知らせ）"
