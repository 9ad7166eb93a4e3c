from django.urls import path

from deliverability import views

app_name = "deliverability"

urlpatterns = [
    path("numbers/<int:contact_id>/<slug:action>/", views.contact_action, name="contact_action"),
    path("reports/", views.report, name="reports"),
    path("reports/<slug:name>/", views.report, name="report"),
]
