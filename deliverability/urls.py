from django.urls import path

from deliverability import views

app_name = "deliverability"

urlpatterns = [
    path("numbers/<int:contact_id>/<slug:action>/", views.contact_action, name="contact_action"),
]
