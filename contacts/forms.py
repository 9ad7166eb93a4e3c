from django import forms


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
