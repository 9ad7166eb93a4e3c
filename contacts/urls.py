from django.contrib.auth import views as auth_views
from django.urls import include, path

from contacts import views

contact_patterns = (
    [
        path("", views.contact_list, name="list"),
        path("<int:contact_id>/", views.contact_detail, name="detail"),
        path("<int:contact_id>/phone/", views.contact_change_phone, name="change_phone"),
        path("import/", views.contact_import, name="import"),
        path("import/<int:import_id>/", views.contact_import_result, name="import_result"),
    ],
    "contacts",
)

urlpatterns = [
    path("", views.home, name="home"),
    path("contacts/", include(contact_patterns)),
    path("organization/switch/", views.switch_organization, name="switch_organization"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
]
