from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from marketdata.views import trading_page
from orders import api

urlpatterns = [
    path("orders", api.OrderCollection.as_view(), name="orders"),
    path("orders/test", api.OrderTest.as_view(), name="order-test"),
    path("orders/<str:order_id>", api.OrderDetail.as_view(), name="order-detail"),
    path("orders/<str:order_id>/cancel", api.OrderCancel.as_view(), name="order-cancel"),
    path("trades", api.TradeList.as_view(), name="trades"),
    path("orderbook", api.OrderBook.as_view(), name="orderbook"),
    path("instruments", api.InstrumentList.as_view(), name="instruments"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    path("", trading_page, name="trading"),
    path("", include("django_prometheus.urls")),
]

handler400 = "orders.errors.bad_request"
handler403 = "orders.errors.permission_denied"
handler404 = "orders.errors.not_found"
handler500 = "orders.errors.server_error"
