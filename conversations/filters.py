import django_filters
from django import forms
from django.db.models import Q

from contacts.urlparams import id_param
from conversations.models import Broadcast, Message, Sender
from deliverability import catalogue
from deliverability.models import SkipReason

CATEGORY_CHOICES = [
    (category.value, category.value.replace("_", " ").title()) for category in catalogue.Category
]


def reason_choices():
    skip = [(f"skip:{value}", label) for value, label in SkipReason.choices]
    errors = [
        (f"code:{code}", f"{reason} ({code})")
        for code, (_, reason) in sorted(catalogue.ERRORS.items(), key=lambda item: item[1][1])
        if code != catalogue.HTTP_TOO_MANY_REQUESTS
    ]
    return [("Skipped", skip), ("Failed", errors)]


def _flat(choices):
    """Grouped choices as one list of (value, label)."""
    for value, label in choices:
        if isinstance(label, (list, tuple)):
            yield from _flat(label)
        else:
            yield str(value), label


class FailedMessageFilter(django_filters.FilterSet):
    """Filters of the Failed & Disabled Messages log (SPEC §7)."""

    reason = django_filters.ChoiceFilter(
        label="Reason", choices=reason_choices, method="filter_reason", empty_label="Any reason"
    )
    category = django_filters.ChoiceFilter(
        label="Category", choices=CATEGORY_CHOICES, method="filter_category", empty_label="Any"
    )
    status = django_filters.ChoiceFilter(
        choices=[
            ("not_delivered", "Failed or undelivered"),
            ("failed", "Failed"),
            ("undelivered", "Undelivered"),
            ("skipped", "Skipped"),
        ],
        empty_label="Any status",
        method="filter_status",
    )
    date_from = django_filters.DateFilter(
        field_name="created_at",
        lookup_expr="date__gte",
        label="From",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    date_to = django_filters.DateFilter(
        field_name="created_at",
        lookup_expr="date__lte",
        label="To",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    sender = django_filters.ModelChoiceFilter(
        queryset=Sender.objects.none(), empty_label="Any sender"
    )
    broadcast = django_filters.CharFilter(
        label="Broadcast", widget=forms.HiddenInput, method="filter_broadcast"
    )

    class Meta:
        model = Message
        fields = ["reason", "category", "status", "date_from", "date_to", "sender", "broadcast"]

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.filters["sender"].queryset = Sender.objects.filter(organization=organization)
        for field in self.form.fields.values():
            css = (
                "form-select form-select-sm"
                if isinstance(field.widget, forms.Select)
                else "form-control form-control-sm"
            )
            field.widget.attrs.setdefault("class", css)

    def filter_reason(self, queryset, name, value):
        kind, _, key = value.partition(":")
        if kind == "skip":
            return queryset.filter(status=Message.Status.SKIPPED, skip_reason=key)
        if kind == "code" and key.isdigit():
            return queryset.filter(error_code=int(key))
        return queryset

    def filter_status(self, queryset, name, value):
        if value == "not_delivered":
            return queryset.filter(status__in=Message.Status.FAILED_OR_UNDELIVERED)
        return queryset.filter(status=value)

    def active(self, query):
        """The filters in use, each as (label, value shown, query string without it)."""
        if not self.is_bound or self.errors:
            return []
        shown = []
        for name, value in self.form.cleaned_data.items():
            if value in (None, ""):
                continue
            field = self.form[name]
            if name == "broadcast":
                broadcast = Broadcast.objects.filter(
                    organization=self.organization, pk=id_param(value) or 0
                ).first()
                text = str(broadcast) if broadcast else f"#{value}"
            else:
                text = (
                    dict(_flat(field.field.choices)).get(field.value(), value)
                    if hasattr(field.field, "choices")
                    else value
                )
            rest = query.copy()
            rest.pop(name, None)
            rest.pop("page", None)
            shown.append((field.label or name.title(), text, rest.urlencode()))
        return shown

    def filter_broadcast(self, queryset, name, value):
        broadcast_id = id_param(value)
        return queryset if broadcast_id is None else queryset.filter(broadcast_id=broadcast_id)

    def filter_category(self, queryset, name, value):
        if value == catalogue.Category.UNREACHABLE:
            # Unknown codes count as unreachable too.
            known_other = [c for c, (cat, _) in catalogue.ERRORS.items() if cat != value]
            return queryset.filter(error_code__isnull=False).exclude(error_code__in=known_other)
        return queryset.filter(Q(error_code__in=catalogue.codes_in(catalogue.Category(value))))
