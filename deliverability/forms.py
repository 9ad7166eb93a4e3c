from django import forms

from deliverability.services import MAX_PAUSE

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
