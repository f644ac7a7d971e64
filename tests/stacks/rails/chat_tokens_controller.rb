class ChatTokensController < ApplicationController
  before_action :authenticate_user!

  def create
    # Generate ChatSDK token for current user
    response = HTTParty.post(
      "#{ENV['CHATSDK_API_URL']}/tokens",
      headers: {
        'X-API-Key' => ENV['CHATSDK_API_KEY'],
        'Content-Type' => 'application/json'
      },
      body: {
        userId: current_user.id,
        name: current_user.name,
        image: current_user.avatar_url,
        custom: {
          email: current_user.email,
          department: current_user.department
        }
      }.to_json
    )

    render json: response.body
  end
end
