from datetime import date

from django import forms
from django.utils import timezone
from django.utils.formats import date_format

from deliverability.models import MAX_PAUSE
from deliverability.reports import PERIODS

CHOOSE_PAUSE = "Choose how long to pause messaging."


class PauseForm(forms.Form):
    """How long the three-dot menu's "Pause messaging" lasts: 1 to 30 days (SPEC §2)."""

    days = forms.IntegerField(
        min_value=1,
        max_value=MAX_PAUSE.days,
        error_messages={
            "required": CHOOSE_PAUSE,
            "invalid": CHOOSE_PAUSE,
            "min_value": CHOOSE_PAUSE,
            "max_value": f"A pause can last at most {MAX_PAUSE.days} days.",
        },
    )


FIRST_REPORT_DAY = date(2000, 1, 1)
MAX_CUSTOM_DAYS = 366
DEFAULT_PERIOD = "30"
ENTER_DATES = "Enter both dates of a custom period (YYYY-MM-DD)."


def _day(value):
    return date_format(value, "M j, Y")


class ReportPeriodForm(forms.Form):
    """The period of a report: the last 7, 30 or 90 days, or a custom range (from/to) of at
    most a year that ends by today in the organization's time zone."""

    period = forms.ChoiceField(
        choices=[(key, key) for key in [*PERIODS, "custom"]],
        required=False,
        error_messages={"invalid_choice": "Choose a period: 7, 30 or 90 days, or custom."},
    )

    def __init__(self, data, *, org, today=None):
        super().__init__(data)
        # "from" is a Python keyword: these two are added by name.
        for name in ("from", "to"):
            self.fields[name] = forms.CharField(
                required=False, max_length=32, error_messages={"max_length": ENTER_DATES}
            )
        self.today = today or timezone.localtime(timezone.now(), org.tzinfo).date()

    def clean(self):
        data = super().clean()
        data["period"] = data.get("period") or DEFAULT_PERIOD
        data["first"] = data["last"] = None
        if data["period"] != "custom":
            return data
        try:
            first = date.fromisoformat(data.get("from") or "")
            last = date.fromisoformat(data.get("to") or "")
        except ValueError as exc:
            raise forms.ValidationError(ENTER_DATES) from exc
        if not (FIRST_REPORT_DAY <= first <= self.today and FIRST_REPORT_DAY <= last <= self.today):
            raise forms.ValidationError(
                f"Choose dates between {_day(FIRST_REPORT_DAY)} and today ({_day(self.today)})."
            )
        if first > last:
            raise forms.ValidationError("The start date must be on or before the end date.")
        if (last - first).days + 1 > MAX_CUSTOM_DAYS:
            raise forms.ValidationError(
                f"A custom period can cover at most {MAX_CUSTOM_DAYS} days."
            )
        data["first"], data["last"] = first, last
        return data

    @property
    def error_texts(self):
        return [text for errors in self.errors.values() for text in errors]

    @property
    def choice(self):
        """(key, first day, last day) asked for; the default 30 days when the form is invalid."""
        if not self.is_valid():
            return DEFAULT_PERIOD, None, None
        return self.cleaned_data["period"], self.cleaned_data["first"], self.cleaned_data["last"]
