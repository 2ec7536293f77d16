"""Code lists with stable codes and their Japanese labels."""

from enum import StrEnum


class NeedCategory(StrEnum):
    """The 16 boxes of the national standard intake form (自立相談支援機関使用標準様式【1】)."""

    HEALTH = "health"
    HOUSING = "housing"
    INCOME = "income"
    RENT_LOAN = "rent_loan"
    TAX_UTILITIES = "tax_utilities"
    DEBT = "debt"
    JOB_SEARCH = "job_search"
    WORK_TROUBLE = "work_trouble"
    COMMUNITY = "community"
    FAMILY = "family"
    CHILDCARE = "childcare"
    ELDER_CARE = "elder_care"
    WITHDRAWAL = "withdrawal"
    ABUSE_DV = "abuse_dv"
    NO_FOOD = "no_food"
    OTHER = "other"

    @property
    def label_ja(self) -> str:
        return _NEED_LABELS_JA[self]


_NEED_LABELS_JA = {
    NeedCategory.HEALTH: "病気や健康・障害",
    NeedCategory.HOUSING: "住まい",
    NeedCategory.INCOME: "収入・生活費",
    NeedCategory.RENT_LOAN: "家賃やローンの支払い",
    NeedCategory.TAX_UTILITIES: "税金や公共料金等の支払い",
    NeedCategory.DEBT: "債務",
    NeedCategory.JOB_SEARCH: "仕事探し・就職",
    NeedCategory.WORK_TROUBLE: "仕事上の不安やトラブル",
    NeedCategory.COMMUNITY: "地域との関係",
    NeedCategory.FAMILY: "家族との関係",
    NeedCategory.CHILDCARE: "子育て",
    NeedCategory.ELDER_CARE: "介護",
    NeedCategory.WITHDRAWAL: "ひきこもり・不登校",
    NeedCategory.ABUSE_DV: "DV・虐待",
    NeedCategory.NO_FOOD: "食べるものがない",
    NeedCategory.OTHER: "その他",
}
