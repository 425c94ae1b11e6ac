// The seed's four components on one page, with vue-resource as their $http (as the seed's app).
import Vue from "vue";
import VueResource from "vue-resource";
import SendMessage from "@seed/src/components/SendMessage.vue";
import ReceiveMessage from "@seed/src/components/ReceiveMessage.vue";
import DeleteMessage from "@seed/src/components/DeleteMessage.vue";
import GetStats from "@seed/src/components/GetStats.vue";

Vue.use(VueResource);
new Vue({
  el: "#app",
  render: (h) => h("div", [h(SendMessage), h(GetStats), h(ReceiveMessage), h(DeleteMessage)]),
});
