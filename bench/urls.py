from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as product_urls


@csrf_exempt
def bare(request):
    """Same stack (every middleware), no work: the ceiling a webhook is measured against."""
    return HttpResponse(status=204)


urlpatterns = [path("bench/bare/", bare), *product_urls]
