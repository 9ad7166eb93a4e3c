import csv
import io

from django import forms
from django.core.files.uploadedfile import SimpleUploadedFile

from contacts.phones import parse_phone
from contacts.queries import FILTERS
from conversations.models import Broadcast, Sender

MAX_LIST_BYTES = 5 * 1024 * 1024


class BroadcastForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, label="Name (for your reports)")
    sender = forms.ModelChoiceField(queryset=Sender.objects.none(), empty_label=None)
    audience = forms.ChoiceField(choices=Broadcast.Audience.choices, initial="active")
    filter = forms.ChoiceField(
        choices=[(f, f.replace("_", "-").title()) for f in FILTERS],
        required=False,
        label="Contacts filter",
    )
    q = forms.CharField(max_length=100, required=False, label="Contacts search")
    numbers = forms.FileField(required=False, label="List of numbers (CSV or text, one a line)")
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=1600)
    # The confirmation step carries the uploaded list (a file input cannot be filled again)
    # and the sendable count staff agreed to.
    listed = forms.CharField(required=False, widget=forms.HiddenInput)
    confirmed_sendable = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.fields["sender"].queryset = Sender.objects.filter(
            organization=organization, is_active=True
        )
        self.fields["sender"].label_from_instance = lambda s: (
            f"{s} ({s.get_kind_display()}, {float(s.throughput):g} msg/s)"
        )
        for field in self.fields.values():
            css = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
            field.widget.attrs.setdefault("class", css)

    def clean(self):
        data = super().clean()
        data["audience_filter"] = {}
        if data.get("audience") == Broadcast.Audience.FILTER:
            data["audience_filter"] = {"filter": data.get("filter") or "active", "q": data.get("q")}
        elif data.get("audience") == Broadcast.Audience.UPLOAD:
            upload = data.get("numbers")
            if not upload and data.get("listed"):
                listed = data["listed"].encode()
                upload = SimpleUploadedFile("listed.txt", listed, content_type="text/plain")
            if not upload:
                raise forms.ValidationError("Upload the list of numbers to send to.")
            data["audience_filter"] = {"phones": self._read_numbers(upload)}
        return data

    def _read_numbers(self, upload):
        if upload.size > MAX_LIST_BYTES:
            raise forms.ValidationError("The list is larger than 5 MB.")
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(
                "The list must be UTF-8 text (CSV or one number a line)."
            ) from exc
        phones = set()
        try:
            # newline="": the csv module reads every line ending, a classic Mac's CR included.
            for row in csv.reader(io.StringIO(text, newline="")):
                for cell in row:
                    parsed = parse_phone(cell, self.organization.default_region)
                    if parsed.is_valid:
                        phones.add(parsed.e164)
                        break
        except csv.Error as exc:
            raise forms.ValidationError(f"The list could not be read as CSV: {exc}.") from exc
        if not phones:
            raise forms.ValidationError("No phone numbers found in the list.")
        return sorted(phones)


class SampleTextForm(forms.Form):
    phone = forms.CharField(max_length=64, label="Send a Sample Text to")
    sender = forms.ModelChoiceField(queryset=Sender.objects.none(), empty_label=None)
    body = forms.CharField(widget=forms.Textarea, max_length=1600)

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.fields["sender"].queryset = Sender.objects.filter(
            organization=organization, is_active=True
        )

    def clean_phone(self):
        parsed = parse_phone(self.cleaned_data["phone"], self.organization.default_region)
        if not parsed.is_valid:
            raise forms.ValidationError(f"This number can't be texted: {parsed.error}.")
        return parsed.e164
