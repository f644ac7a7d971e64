# Runs the guide's Rails controller (chat_tokens_controller.rb, unchanged) the way Rails would:
# `create` runs for the logged-in `current_user` and its `render json:` is the response. Only
# the framework is stood in for (ApplicationController with `before_action`, `render` and
# Devise's `current_user`); the call to POST /tokens is the guide's own code, with HTTParty
# (Debian's ruby-httparty).
#
# CHAT_USER (JSON: id, name, avatar_url, email, department) is the logged-in user, an
# ActiveRecord-like object: an integer id stays an Integer. Prints what `render json:` got.
require 'httparty'
require 'json'

User = Struct.new(:id, :name, :avatar_url, :email, :department, keyword_init: true)

class ApplicationController
  def self.before_action(*); end

  attr_reader :rendered

  def current_user
    User.new(**JSON.parse(ENV.fetch('CHAT_USER'), symbolize_names: true))
  end

  # `render json: string` sends the string as it is; anything else as its JSON.
  def render(json:)
    @rendered = json.is_a?(String) ? json : JSON.generate(json)
  end
end

require_relative 'chat_tokens_controller'

controller = ChatTokensController.new
controller.create
print controller.rendered
