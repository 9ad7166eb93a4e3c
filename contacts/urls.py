from django.contrib.auth import views as auth_views
from django.urls import path

from contacts import views

urlpatterns = [
    path("", views.home, name="home"),
    path("organization/switch/", views.switch_organization, name="switch_organization"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
]
