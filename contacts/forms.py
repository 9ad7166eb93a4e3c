from django import forms

from contacts.models import ContactImport


class PhoneForm(forms.Form):
    phone = forms.CharField(
        label="Phone number",
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"class": "form-control", "autocomplete": "off"}),
    )
    note = forms.CharField(
        label="Note (optional)",
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"class": "form-control"}),
    )


class ImportForm(forms.Form):
    on_duplicate_phone = forms.ChoiceField(
        label="When a row's phone already belongs to another contact",
        choices=ContactImport.OnDuplicatePhone.choices,
        initial=ContactImport.OnDuplicatePhone.SKIP,
        required=False,
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
    )
