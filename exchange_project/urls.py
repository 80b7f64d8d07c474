from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from marketdata import api as marketdata_api
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
    # analytics, positions and settlement (issue 15)
    path("analytics/vwap", marketdata_api.Vwap.as_view(), name="analytics-vwap"),
    path("klines", marketdata_api.Klines.as_view(), name="klines"),
    path("ticker/24h", marketdata_api.Ticker24h.as_view(), name="ticker-24h"),
    path("positions/<str:client_id>", api.PositionList.as_view(), name="positions"),
    path("settlements", api.SettlementList.as_view(), name="settlements"),
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
