from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from orders import api

urlpatterns = [
    path("orders", api.OrderCollection.as_view(), name="orders"),
    path("orders/<str:order_id>", api.OrderDetail.as_view(), name="order-detail"),
    path("orders/<str:order_id>/cancel", api.OrderCancel.as_view(), name="order-cancel"),
    path("trades", api.TradeList.as_view(), name="trades"),
    path("orderbook", api.OrderBook.as_view(), name="orderbook"),
    path("instruments", api.InstrumentList.as_view(), name="instruments"),
    path("readyz", api.Readiness.as_view(), name="readyz"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # Its script as a file of its own, not inline: the pages' content security policy allows no inline script.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    # Admin endpoints (orders.auth.IsAdmin) before the admin site, whose last pattern takes every path.
    path("admin/audit", api.AuditList.as_view(), name="admin-audit"),
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),  # the browsable API's log in / log out
    path("", include("django_prometheus.urls")),
]
